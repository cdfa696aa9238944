"""Ontology linking: registry condition and intervention names -> MeSH, DrugBank and ICD-10.

- ``text``: name normalization (one function for registry names and vocabulary terms alike);
- ``vocab``: the vocabulary tables (loading jobs write them) and the concept/term views the linker joins on;
- ``match``: exact, synonym and normalized matches as Spark joins, then rapidfuzz on what is left;
- ``apply``: writes the links onto silver ``conditions``/``drugs`` and keeps every candidate visible;
- ``evaluate``: precision and recall against NLM's own mapping of ClinicalTrials.gov records.
"""
