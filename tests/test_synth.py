"""The synthetic world generator (src/trialpanorama/synth, jobs/generate_world.py).

Fast tests read the written files back with plain Python (zip + json, csv, lxml) and check them against the
ground truth: determinism, distributions, id links that really connect every planted cluster, codes that
exist in the generated vocabularies. The heavy test runs the project's three ingest jobs on a small world
and checks that exactly the planted malformed records are rejected and that counts reconcile.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import statistics
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from lxml import etree

from tests.conftest import ROOT, run_named_job
from trialpanorama.synth.settings import load_settings
from trialpanorama.synth.world import generate

CONF = load_settings()
UNIFY = yaml.safe_load((ROOT / "conf" / "unify.yaml").read_text())
ID_PATTERNS = {k: re.compile(v) for k, v in UNIFY["id_patterns"].items()}
NON_IDENTITY = set(UNIFY["non_identity_id_types"])
NIH = re.compile(r"^\d?[A-Z]\d{2}[A-Z]{2}\d{6}(?:-\d{2}[A-Z0-9]*)?$")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def small_config(tmp_path: Path, shard_size: int) -> Path:
    raw = yaml.safe_load((ROOT / "conf" / "synth.yaml").read_text())
    raw["shard_size"] = shard_size
    raw["vocabulary"]["mesh_tree_tsv"] = CONF["vocabulary"]["mesh_tree_tsv"]
    path = tmp_path / "conf" / "synth.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    generate(2500, 11, out, workers=2, show_progress=False)
    return out


# ------------------------------------------------------------------------------------ reading back
def node(value: str) -> str | None:
    """The id-graph node of an id as unify.yaml defines it (None: not a registration id)."""
    v = value.upper().replace(" ", "")
    for registry, pattern in ID_PATTERNS.items():
        m = pattern.match(v)
        if m:
            return f"{registry}:{m.group(1)}"
    return None


def ctgov_records(world: Path) -> dict[str, dict]:
    out = {}
    for z in sorted((world / "ctgov").glob("*.zip")):
        with zipfile.ZipFile(z) as zf:
            for name in zf.namelist():
                try:
                    out[name] = json.loads(zf.read(name))
                except json.JSONDecodeError:
                    out[name] = None
    return out


def id_edges(world: Path) -> list[tuple[str, str]]:
    """Every (record id, cited id) pair written in the files, as unify would see them (grants excluded)."""
    edges: list[tuple[str, str]] = []
    for rec in ctgov_records(world).values():
        ident = ((rec or {}).get("protocolSection") or {}).get("identificationModule") or {}
        own = ident.get("nctId")
        for s in ident.get("secondaryIdInfos") or []:
            if own and s.get("type") not in NON_IDENTITY:
                edges.append((own, s["id"]))
    for path in sorted((world / "ictrp").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                if len(row) != 63:
                    continue
                for sid in row[2].split(";") if row[2] != "NULL" else []:
                    if not NIH.match(sid):
                        edges.append((row[0], sid))
                if row[38] not in ("NULL", ""):
                    edges.append((row[0], row[38]))
    for path in sorted((world / "ictrp").glob("*.xml")):
        for trial in etree.parse(str(path)).getroot():
            tid = trial.findtext("TrialID")
            for el in trial.findall("Secondary_ID"):
                if tid:
                    edges.append((tid, el.text))
    return edges


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


# ---------------------------------------------------------------------------------------- tests
def test_same_seed_gives_byte_identical_files_whatever_the_workers(tmp_path):
    cfg = small_config(tmp_path, 120)
    a = generate(300, 5, tmp_path / "a", workers=1, config=cfg, show_progress=False)
    b = generate(300, 5, tmp_path / "b", workers=2, config=cfg, show_progress=False)
    c = generate(300, 6, tmp_path / "c", workers=2, config=cfg, show_progress=False)
    assert a["shards"] == 3 and len(a["files"]) > 10
    assert a["files"] == b["files"]
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    changed = [f for f in a["files"] if a["files"][f] != c["files"].get(f)]
    assert any(f.startswith("ctgov/") for f in changed), "another seed must give another world"


def test_refuses_a_non_empty_output_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        generate(10, 1, tmp_path / "x", show_progress=False)


def test_files_are_in_the_real_shapes(world):
    names = sorted(p.relative_to(world).as_posix() for p in world.rglob("*") if p.is_file())
    assert "ctgov/ctg-studies.json.zip" in names and "vocab/desc2025.xml" in names
    assert "vocab/drugbank vocabulary.csv" in names and "pubmed/pubmed26n0001.xml.gz" in names
    recs = ctgov_records(world)
    assert all(re.match(r"^\d\d/NCT\d{8}\.json$", n) for n in recs)
    good = [r for r in recs.values() if r and "nctId" in r["protocolSection"]["identificationModule"]]
    assert all(n.split("/")[0] == n[-7:-5] for n in recs)  # sharded by the last two digits
    mesh_ids = [m["id"] for r in good for m in r["derivedSection"]["conditionBrowseModule"]["meshes"]]
    assert mesh_ids and all(re.match(r"^D\d{9}$", i) for i in mesh_ids)  # zero-padded to 10 characters
    with (world / "ictrp" / "ictrp-export.csv").open(newline="") as fh:
        widths = Counter(len(r) for r in csv.reader(fh))
    assert widths[63] > 100 and set(widths) <= {62, 63}
    root = etree.parse(str(world / "ictrp" / "ictrp-portal.xml")).getroot()
    assert root.tag == "Trials_downloaded_from_ICTRP" and len(root) > 20
    with gzip.open(world / "pubmed" / "pubmed26n0001.xml.gz") as fh:
        articles = etree.parse(fh).getroot()
    assert articles.tag == "PubmedArticleSet"
    sizes = json.loads((world / "manifest.json").read_text())["ctgov_record_bytes"]
    assert 10_000 <= sizes["median"] <= 20_000 and sizes["max"] > 5 * sizes["median"]


def test_distributions_match_the_config(world):
    records = [r for r in read_jsonl(world / "truth" / "records.jsonl") if r["role"] == "primary"]
    n = len(records)
    inter = [
        r for r in records if r["study_type"] == "INTERVENTIONAL" and r["registry"] != "EU CTR"
    ]  # EU: no NA
    want = CONF["design"]["phase"]
    total = sum(want.values())
    got = Counter(r["phase"] for r in inter)
    for phase, w in want.items():
        assert abs(got[phase] / len(inter) - w / total) < 0.04, (phase, got[phase] / len(inter), w / total)
    st = CONF["status"]["weights"]
    got_st = Counter(r["status"] for r in records)
    assert abs(got_st["COMPLETED"] / n - st["COMPLETED"] / sum(st.values())) < 0.04
    assert {"TERMINATED", "WITHDRAWN", "SUSPENDED"} <= set(got_st)
    assert set(Counter(r["why_stopped_class"] for r in records if r["why_stopped_class"])) == set(
        CONF["status"]["why_stopped_classes"]
    )
    assert all(
        r["why_stopped_class"] for r in records if r["status"] in ("TERMINATED", "WITHDRAWN", "SUSPENDED")
    )
    median = {
        p: statistics.median(r["enrollment"] for r in inter if r["phase"] == p and r["status"] != "WITHDRAWN")
        for p in ("PHASE1", "PHASE2", "PHASE3")
    }
    assert median["PHASE1"] < median["PHASE2"] < median["PHASE3"]
    assert all(r["enrollment"] == 0 for r in records if r["status"] == "WITHDRAWN")
    years = Counter(int(r["registered"][:4]) for r in records)
    assert max(years) - min(years) >= 15 and sum(v for y, v in years.items() if y >= 2015) > n / 2
    registries = Counter(r["registry"] for r in records)
    assert 0.48 < registries["ClinicalTrials.gov"] / n < 0.64 and len(registries) >= 10
    clusters = read_jsonl(world / "truth" / "clusters.jsonl")
    multi = sum(1 for c in clusters if sum(m["link"] == "id" for m in c["members"]) > 1)
    assert 0.09 < multi / len(clusters) < 0.16
    assert any(m["link"] == "near_duplicate" for c in clusters for m in c["members"])


def test_every_planted_cluster_is_connected_by_written_ids_and_near_duplicates_are_not(world):
    uf = UnionFind()
    for a, b in id_edges(world):
        na, nb = node(a), node(b)
        if na and nb:
            uf.union(na, nb)
    clusters = read_jsonl(world / "truth" / "clusters.jsonl")
    linked = 0
    for c in clusters:
        ids = [node(m["id"]) for m in c["members"] if m["link"] == "id"]
        assert all(ids), c
        roots = {uf.find(i) for i in ids}
        assert len(roots) == 1, f"cluster {c['trial']} is split: {c['members']}"
        linked += len(ids) > 1
        for m in c["members"]:
            if m["link"] == "near_duplicate":
                assert uf.find(node(m["id"])) not in roots, f"near duplicate {m['id']} shares an id"
    assert linked > 100
    # Different trials never share a component (grant numbers are not identity edges).
    owner: dict[str, str] = {}
    for c in clusters:
        for m in c["members"]:
            root = uf.find(node(m["id"]))
            assert owner.setdefault(root, c["trial"]) == c["trial"], f"{m['id']} joins two trials"


def test_grant_traps_are_written_and_shared_across_unrelated_trials(world):
    grants = read_jsonl(world / "truth" / "grants.jsonl")
    assert grants and all(len(g["trials"]) >= 3 for g in grants)
    by_file = {n[-16:-5]: r for n, r in ctgov_records(world).items() if r}
    for g in grants:
        for nct in g["ids"]:
            infos = by_file[nct]["protocolSection"]["identificationModule"]["secondaryIdInfos"]
            assert {"id": g["grant"], "type": "NIH"}.items() <= next(
                i for i in infos if i["id"] == g["grant"]
            ).items()


def test_codes_exist_in_the_generated_vocabularies(world):
    desc = etree.parse(str(world / "vocab" / "desc2025.xml")).getroot()
    uis = {r.findtext("DescriptorUI"): r.findtext("DescriptorName/String") for r in desc}
    with (world / "vocab" / "drugbank vocabulary.csv").open(newline="") as fh:
        drugbank = {row[0]: row[2] for row in csv.reader(fh)}
    records = read_jsonl(world / "truth" / "records.jsonl")
    for r in records:
        for c in r["conditions"]:
            assert uis[c["mesh_ui"]] == c["name"]
        for d in r["drugs"]:
            assert d["drugbank_id"] in drugbank or "DBX" + d["drugbank_id"][2:] in drugbank
            assert uis[d["mesh_ui"]]
    written = Counter(c["written"] == c["name"] for r in records for c in r["conditions"])
    assert written[False] > 0.25 * sum(written.values())  # spelling varies
    for rec in ctgov_records(world).values():
        for m in ((rec or {}).get("derivedSection") or {}).get("conditionBrowseModule", {}).get("meshes", []):
            assert uis["D" + m["id"][1:].lstrip("0").rjust(6, "0")] == m["term"]


def test_reviews_cite_their_included_trials_papers(world):
    with gzip.open(world / "pubmed" / "pubmed26n0001.xml.gz") as fh:
        root = etree.parse(fh).getroot()
    refs, types = {}, {}
    for art in root:
        pmid = art.findtext("MedlineCitation/PMID")
        refs[pmid] = {
            e.text for e in art.findall("PubmedData/ReferenceList/Reference/ArticleIdList/ArticleId")
        }
        types[pmid] = {
            e.get("UI") for e in art.findall("MedlineCitation/Article/PublicationTypeList/PublicationType")
        }
    reviews = read_jsonl(world / "truth" / "reviews.jsonl")
    assert reviews
    for r in reviews:
        assert "D000078182" in types[r["review_pmid"]]
        assert set(r["included_pmids"]) <= refs[r["review_pmid"]] and r["included_pmids"]
        assert set(r["unrelated_pmids"]) <= refs[r["review_pmid"]]


def test_planted_malformed_records_are_where_the_truth_says(world):
    planted = read_jsonl(world / "truth" / "malformed.jsonl")
    kinds = Counter(p["defect"] for p in planted)
    assert set(kinds) >= {
        "truncated JSON",
        "malformed NCT id",
        "missing NCT id",
        "wrong field type",
        "wrong column count",
        "unknown registry id",
        "impossible date",
        "missing TrialID",
        "missing PMID",
        "malformed PMID",
        "no ConceptList",
        "malformed DrugBank ID",
    }
    recs = ctgov_records(world)
    for p in planted:
        if p["kind"] == "ctgov":
            rec = recs[p["member"]]
            assert (rec is None) == (p["defect"] == "truncated JSON")
        elif p["kind"] == "pubmed":
            with gzip.open(world / p["file"]) as fh:
                assert p["marker"].encode() in fh.read()
        else:
            assert p["marker"] in (world / p["file"]).read_text(encoding="utf-8"), p


# ------------------------------------------------------------------------------------- heavy: ingest
@pytest.mark.heavy
def test_ingest_rejects_exactly_the_planted_records(tmp_path, mlflow_server, spark):
    from trialpanorama import lake

    out = tmp_path / "world"
    manifest = generate(400, 3, out, workers=1, show_progress=False)
    planted = read_jsonl(out / "truth" / "malformed.jsonl")
    root = tmp_path / "lake"
    counts = manifest["counts"]
    expected_in = {
        "ctgov": counts["ctgov_records"],
        "ictrp": counts["ictrp_csv_records"] + counts["ictrp_xml_records"],
        "pubmed": counts["pubmed_articles"],
    }
    summaries = {src: run_named_job(f"ingest_{src}", root, "--input", str(out / src))
                 for src in ("ctgov", "ictrp", "pubmed")}
    rejects = (
        lake.read_named(spark, str(root), "rejects")
        .select("source", "source_file", "raw", "reason")
        .collect()
    )
    for src, s in summaries.items():
        mine = [p for p in planted if p["kind"] == src]
        assert s["records_in"] == expected_in[src], (src, s)
        assert s["records_in"] == s["accepted"] + s["rejected"], (src, s)
        assert s["rejected"] == len(mine), (src, s["rejected_by_reason"], mine)
        got = [r for r in rejects if r.source == src]
        for p in mine:
            if src == "ctgov":
                hit = [r for r in got if r.source_file.endswith(f"{p['file']}!/{p['member']}")]
            else:
                hit = [r for r in got if r.source_file.endswith(p["file"]) and p["marker"] in (r.raw or "")]
            assert len(hit) == 1, (p, [(r.source_file, r.reason) for r in got])
    assert summaries["ictrp"].get("unmapped_values", {}).keys() <= {"target_size", "date"}, summaries["ictrp"]


def test_set_overrides_reach_the_settings_and_their_hash():
    plain = load_settings()
    tuned = load_settings(None, ["shard_size=123"])
    assert tuned["shard_size"] == 123 and plain["shard_size"] != 123
    assert tuned["_hash"] != plain["_hash"]
