"""The project's own literature index (tantivy over the lake's publications) that study search is scored on."""
