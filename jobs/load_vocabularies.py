"""Load the linking vocabularies into the lake: gold `vocab_mesh(_sources)`, `vocab_drugs`, `vocab_icd10`.

    python jobs/load_vocabularies.py --lake ./lakehouse                     # packaged defaults, no download
    python jobs/load_vocabularies.py --mesh-xml desc2025.xml --mesh-supp-xml supp2025.xml \\
        --drugbank-csv "drugbank vocabulary.csv"                           # the real distributions

Defaults: the 2019 MeSH tree (conf/linking.yaml vocabularies.mesh.tree_tsv; skipped with a message when absent),
MeSH UIs and names harvested from the lake (ClinicalTrials.gov derived meshes, PubMed headings when present),
drug-named-entity-recognition's dictionary, and the ICD-10-CM / WHO ICD-10 code lists. Malformed records go to
`rejects` with a reason; a rerun on unchanged inputs commits nothing.
"""

from pyspark.sql import functions as F

from trialpanorama.jobrun import JobContext, main_guard, run_job


def add_args(p) -> None:
    p.add_argument("--mesh-xml", nargs="+", default=[], help="MeSH descriptor XML files (descYYYY.xml[.gz])")
    p.add_argument("--mesh-supp-xml", nargs="+", default=[], help="MeSH supplementary XML files (suppYYYY.xml)")
    p.add_argument("--mesh-tree", nargs="+", default=None,
                   help="tree_number<TAB>name files (default: vocabularies.mesh.tree_tsv in conf/linking.yaml)")
    p.add_argument("--no-mesh-tree", action="store_true", help="do not load the MeSH tree file")
    p.add_argument("--no-lake-harvest", action="store_true", help="do not collect MeSH UIs/names from the lake")
    p.add_argument("--drugbank-csv", nargs="+", default=[], help="DrugBank open vocabulary CSV files")
    p.add_argument("--no-drug-dictionary", action="store_true",
                   help="do not load drug-named-entity-recognition's dictionary")
    p.add_argument("--drug-dictionary", default=None, help="path of drug_ner_dictionary.pkl.bz2 (default: located)")
    p.add_argument("--icd10-systems", nargs="+", default=None, choices=["ICD-10-CM", "ICD-10"],
                   help="ICD-10 code lists to load (default: both)")
    p.add_argument("--only", nargs="+", default=["mesh", "drugs", "icd10"], choices=["mesh", "drugs", "icd10"],
                   help="vocabularies to load (default: all)")


def body(ctx: JobContext) -> dict:
    from trialpanorama.linking import vocab

    a = ctx.args
    opts = vocab.LoadOptions(
        mesh_xml=a.mesh_xml, mesh_supp_xml=a.mesh_supp_xml, mesh_tree=[] if a.no_mesh_tree else a.mesh_tree,
        drugbank_csv=a.drugbank_csv, drug_dictionary=not a.no_drug_dictionary, dictionary_path=a.drug_dictionary,
        icd10_systems=a.icd10_systems, harvest_lake=not a.no_lake_harvest, only=tuple(a.only))
    stats = vocab.load(ctx.spark, ctx.cfg, opts, F.lit(ctx.started_at).cast("timestamp"), report=ctx.record_write,
                       record_input=lambda t, v: ctx.run.table_version(t, v, role="input"))
    ctx.run.metrics({f"rows.{k}": v for k, v in stats["vocab_rows"].items()})
    return stats


def main(argv: list[str] | None = None) -> dict:
    return run_job("load_vocabularies", __doc__.splitlines()[0], body, add_args=add_args, argv=argv)


if __name__ == "__main__":
    main_guard(main)
