"""Hostile input for every source format, and the checks that the pipeline survives it (issue 10, part 1).

``payloads`` holds the shared hostile values, one module per format writes its files (``ctgov``, ``ictrp``,
``pubmed``, ``vocab`` for MeSH and DrugBank, ``panorama``), ``xml_attacks`` the entity bombs and external
entities, and ``runner`` ingests each format with the real job code and reads the lake back.
"""
