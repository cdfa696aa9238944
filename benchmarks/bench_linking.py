"""Linking throughput (names/s) on generated registry names, and how many of them find their source concept.

    python benchmarks/bench_linking.py --names 5000 [--no-dictionary] [--set spark.master=local[2]]

Setup (timed apart): a temporary lake with the vocabularies the default pipeline uses (the 2019 MeSH tree from
../shared/data when present, else the test fixture tree; the drug-named-entity-recognition dictionary; WHO
ICD-10). Names are drawn from those vocabularies (MeSH C/F03 descriptors as conditions, dictionary drugs as
interventions) and rewritten the way registries write them: case, word order, inverted headings, plurals,
typos, stage words, dose and route words, ICD-10 code prefixes; a share are made-up names that must not link.
They are written as silver rows of synthetic studies, then jobs' linking library runs on them twice: all names
new (full linking), and again with nothing new (incremental rerun). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT.parent / "shared" / "data" / "mesh" / "mesh_tree_terms.tsv"
FIXTURE_TREE = ROOT / "tests" / "fixtures" / "vocab" / "mesh_tree_terms.tsv"

DOSES = ["500 mg", "10 mg/kg", "1 g", "200 mg/m2", "0.5%", "40 mg", "2 x 10^6 cells"]
ROUTES = ["oral tablet", "IV", "intravenous infusion", "subcutaneous injection", "capsules", "PO BID", "once daily"]
STAGES = ["Metastatic", "Advanced", "Recurrent", "Stage IV", "Severe", "Early"]
NOISE = ["Quality of life questionnaire", "Usual care", "Placebo", "Healthy volunteers", "Blood sampling",
         "Standard of care", "Telephone follow-up", "Education session", "Sham procedure", "Observation"]


def _typo(rng: random.Random, s: str) -> str:
    letters = [i for i, c in enumerate(s) if c.isalpha()]
    if len(letters) < 8:
        return s
    i = rng.choice(letters[2:-2])
    return s[:i] + s[i + 1] + s[i] + s[i + 2:] if rng.random() < 0.5 else s[:i] + s[i + 1:]


def condition_variant(rng: random.Random, name: str) -> tuple[str, str]:
    r = rng.random()
    if r < 0.25:
        return name, "as is"
    if r < 0.40:
        return name.upper() if rng.random() < 0.5 else name.lower(), "case"
    if r < 0.55 and ", " in name:
        head, tail = name.split(", ", 1)
        return f"{tail} {head}", "inverted heading"
    if r < 0.65:
        return f"{rng.choice(STAGES)} {name.lower()}", "stage word"
    if r < 0.80:
        return _typo(rng, name), "typo"
    if r < 0.90:
        return (name[:-1] if name.endswith("s") else name + "s"), "plural"
    return f"{rng.choice(['E11.9', 'I10', 'C50.9', 'J45'])} - {name}", "ICD-10 prefix"


def drug_variant(rng: random.Random, name: str) -> tuple[str, str]:
    r = rng.random()
    if r < 0.3:
        return name, "as is"
    if r < 0.7:
        return f"{name} {rng.choice(DOSES)} {rng.choice(ROUTES)}", "dose and route"
    if r < 0.85:
        return name.upper(), "case"
    return _typo(rng, name), "typo"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=int, default=5000, help="registry names to generate (half conditions)")
    ap.add_argument("--noise", type=float, default=0.1, help="share of made-up names")
    ap.add_argument("--no-dictionary", action="store_true", help="leave the drug dictionary out")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    from pyspark.sql import functions as F

    from trialpanorama import lake
    from trialpanorama.config import load_config
    from trialpanorama.lake import get_spark
    from trialpanorama.linking import apply, vocab
    from trialpanorama.schemas import TABLES

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = str(Path(tmp) / "lake")
        cfg = load_config(None, [f"lake.root={root}", *args.overrides])
        spark = get_spark(cfg, app_name="bench_linking")
        lcfg = vocab.linking_config(cfg)
        at = F.current_timestamp()

        t0 = time.monotonic()
        tree = TREE if TREE.is_file() else FIXTURE_TREE
        opts = vocab.LoadOptions(mesh_tree=[str(tree)], drug_dictionary=not args.no_dictionary,
                                 icd10_systems=["ICD-10"], harvest_lake=False)
        vocab.load(spark, cfg, opts, at)
        setup_s = time.monotonic() - t0

        # Source concepts: condition descriptors and dictionary drugs (or MeSH D-tree names without it).
        mesh = lake.read_named(spark, root, "vocab_mesh")
        conds = [r[0] for r in mesh.where(F.exists("tree_numbers", lambda t: t.startswith("C") | t.startswith("F03")))
                 .select("mesh_name").collect()]
        drugs = [r[0] for r in lake.read_named(spark, root, "vocab_drugs").where("drugbank_id IS NOT NULL")
                 .select("name").collect()]
        if not drugs:
            drugs = [r[0] for r in mesh.where(F.exists("tree_numbers", lambda t: t.startswith("D02")))
                     .select("mesh_name").collect()]
        n_c = args.names // 2
        rows_c, rows_d, truth = [], [], {}
        for i in range(args.names):
            study = f"BENCH{i // 4:07d}"
            is_cond = i < n_c
            if rng.random() < args.noise:
                name, how, source = f"{rng.choice(NOISE)} {i}", "noise", None
            elif is_cond:
                source = rng.choice(conds)
                name, how = condition_variant(rng, source)
            else:
                source = rng.choice(drugs)
                name, how = drug_variant(rng, source)
            truth[("condition" if is_cond else "drug", name)] = (source, how)
            if is_cond:
                rows_c.append((study, name, None, None, None, "registry", None, None))
            else:
                rows_d.append((study, name, "DRUG", None, None, None, "registry", None, None, None, None, None, None))
        cdf = spark.createDataFrame(rows_c, TABLES["conditions"].schema)
        ddf = spark.createDataFrame(rows_d, TABLES["drugs"].schema)
        keys = cdf.select("study_id").union(ddf.select("study_id")).distinct()
        lake.replace_for_keys(spark, root, "conditions", cdf, keys)
        lake.replace_for_keys(spark, root, "drugs", ddf, keys)
        n_names = len(truth)

        t1 = time.monotonic()
        first = apply.run(spark, root, lcfg)
        full_s = time.monotonic() - t1
        t2 = time.monotonic()
        again = apply.run(spark, root, lcfg)
        rerun_s = time.monotonic() - t2

        # Recovery: the chosen concept of a generated name is its source concept (drugs: DrugBank name).
        links = {(r["entity"], r["name"]): r for r in
                 lake.read_named(spark, root, "link_candidates").where("decision = 'chosen' AND vocabulary <> 'icd10'")
                 .collect()}
        by_how: dict[str, dict[str, int]] = {}
        for (entity, name), (source, how) in truth.items():
            row = links.get((entity, name))
            got = row["concept_name"] if row else None
            b = by_how.setdefault(f"{entity}:{how}", {"names": 0, "linked": 0, "to_source": 0})
            b["names"] += 1
            b["linked"] += row is not None
            b["to_source"] += bool(got and source and got.lower() == source.lower())
        print(json.dumps({
            "names": n_names, "vocab_setup_seconds": round(setup_s, 1),
            "link_seconds": round(full_s, 1), "names_per_second": round(n_names / full_s, 1),
            "rerun_seconds": round(rerun_s, 1), "rerun_names_linked": again["names_linked_now"],
            "rows_by_method": first["rows_by_method"], "recovery": by_how,
            "vocab_terms": lake.read_named(spark, root, "vocab_terms").count(),
            "spark_master": spark.sparkContext.master,
        }), flush=True)
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
