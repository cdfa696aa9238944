"""A synthetic registry world written in the real source formats, with its ground truth.

The pipeline's parsers were written from documentation and a handful of real records; this package makes a
world large enough to measure them (``jobs/generate_world.py``) and exact enough to test them: every planted
duplicate, grant trap, near duplicate and malformed record is listed in ``truth/``.

Modules, one job each: ``settings`` (conf/synth.yaml + weighted draws), ``vocab`` (real MeSH tree names and
drug-dictionary drugs, with synthetic MeSH UIs and spelling variants), ``ids`` (registry id formats),
``trials`` (one trial's facts), ``text`` (templated text that agrees with those facts), ``ctgov`` / ``ictrp``
/ ``pubmed`` (the source formats), ``vocab_files`` (MeSH XML and DrugBank CSV), ``shard`` (one shard's
records and truth) and ``world`` (parallel generation, merging, manifest).
"""
