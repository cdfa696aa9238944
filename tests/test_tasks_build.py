"""The task jobs as users run them, on a real fixture lake built by the ingest and gold jobs in-process.

The lake is conftest's session-scoped ``task_lake`` (ClinicalTrials.gov + ICTRP fixtures, the PubMed fixtures
plus the review fixtures of tests/fixtures/tasks/pubmed, up to build_tasks), shared with test_pii; then
check_leakage and export_tasks.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import run_named_job
from trialpanorama import lake
from trialpanorama.tasks.build import CONTRACT_COLS, frame_hash
from trialpanorama.tasks.registry import TASKS, load_task

pytestmark = pytest.mark.heavy


def rows_of(spark, root: str, task: str) -> list[dict]:
    return [r.asDict(recursive=True) for r in lake.read_named(spark, root, task).collect()]


def test_eight_tables_follow_the_contract(task_lake, spark):
    root, index, s = task_lake
    assert index["documents"] > 70 and s["why_stopped_accuracy"] >= 0.9
    for task in TASKS:
        df = lake.read_named(spark, root, task)
        assert set(CONTRACT_COLS) <= set(df.columns)
        rows = rows_of(spark, root, task)
        assert rows, f"{task} built no samples"
        assert {r["split"] for r in rows} <= {"train", "test"}
        assert s["samples"][task]["train"] + s["samples"][task]["test"] == len(rows)
        mod = load_task(task)
        for r in rows:
            assert r["task"] == task and r["task_version"] == mod.VERSION and r["sample_id"].startswith(task)
            assert [m["role"] for m in r["messages"]] == ["system", "user"] and r["messages"][1]["content"]
            json.loads(r["input"]), json.loads(r["reference"])
            assert r["trial_uids"] or r["pmids"]
        if task != "study_search":  # the reference answer, parsed, scores perfectly
            preds = [mod.parse(r["answer"]) for r in rows]
            scores = mod.score(preds, [r["reference"] for r in rows])
            key = {"sample_size_estimation": "accuracy_within_20pct",
                   "trial_completion_assessment": "balanced_accuracy_outcome"}.get(task, "accuracy")
            assert scores[key] == 1.0 and scores.get("unparseable", 0) == 0, (task, scores)


def test_review_tasks_use_included_studies_and_hard_negatives(task_lake, spark):
    root, index, s = task_lake
    search = rows_of(spark, root, "study_search")
    # 12 fixture reviews + the Cochrane-style fixture review are candidates; a training review that shares a
    # trial or paper with a test sample of any task (its hard negatives and distractors included) is dropped
    # for leakage, and counted: none is lost without a trace, and most survive.
    dropped = s["dropped"]["study_search"]
    assert len(search) + dropped["leak"] + dropped["assembly"] == 13 and dropped["assembly"] == 0, dropped
    assert len(search) >= 10, dropped
    ref = json.loads(next(r for r in search if r["source_key"] == "41000000")["reference"])
    assert ref["included_pmids"] == ["41000001", "41000002", "41000003"]  # the narrative review is not included
    screen = {r["source_key"]: r for r in rows_of(spark, root, "study_screening")}
    dec = json.loads(screen["41000000"]["reference"])["decisions"]
    assert sorted(p for p, d in dec.items() if d == "include") == ["41000001", "41000002", "41000003"]
    assert any(d == "exclude" for d in dec.values())
    ev = {r["source_key"]: r for r in rows_of(spark, root, "evidence_summary")}
    opts = json.loads(ev["41000000"]["input"])["options"]
    assert len(opts) == 4 and any("Inhaled corticosteroids" in o for o in opts.values())
    assert s["baselines"]["study_search"] or s["samples"]["study_search"]["test"] == 0
    assert {"majority", "random"} <= set(s["baselines"]["arm_design"])
    assert "median_by_phase_condition" in s["baselines"]["sample_size_estimation"]


def test_search_scores_queries_deterministically(task_lake):
    root, index, _ = task_lake
    mod = load_task("study_search")
    refs = [{"included_pmids": ["41000001", "41000002", "41000003"]}]
    good = mod.score(['"inhaled corticosteroids"[tiab] AND randomised[tiab]'], refs, index=index["index"])
    assert good["recall@100"] == 1.0 and good == mod.score(['"inhaled corticosteroids"[tiab] AND randomised[tiab]'],
                                                           refs, index=index["index"])
    bad = mod.score(["(asthma OR", "unparseable"], refs * 2, index=index["index"])
    assert bad["recall@100"] == 0.0 and bad["query_errors"] == 1 and bad["unparseable"] == 1


def test_leakage_check_passes_and_catches_a_leak(task_lake, spark, tmp_path):
    root, _, _ = task_lake
    report = run_named_job("check_leakage", root)
    assert report["leaks"] == 0 and report["samples"] > 0
    leaked = tmp_path / "leaked"
    shutil.copytree(root, leaked)
    test_row = next(r for r in rows_of(spark, str(leaked), "arm_design") if r["split"] == "test")
    victim = next(r for t in TASKS if t != "arm_design" for r in rows_of(spark, str(leaked), t) if r["split"] == "train")
    victim["sample_id"] = "leak-1"
    victim["trial_uids"] = victim["trial_uids"] + [test_row["trial_uids"][0]]
    from trialpanorama.tasks.build import to_frame

    to_frame(spark, victim["task"], [victim]).write.format("delta").mode("append").save(
        lake.table_uri(str(leaked), victim["task"]))
    with pytest.raises(SystemExit) as exc:
        run_named_job("check_leakage", leaked)
    assert exc.value.code == 1


def test_rebuild_gives_the_same_tables_and_commits_nothing(task_lake, spark):
    root, _, first = task_lake
    again = run_named_job("build_tasks", root)
    assert again["content_hash"] == first["content_hash"] and again["tables"] == {}
    for task in ("arm_design", "study_screening"):
        assert frame_hash(lake.read_named(spark, root, task)) == first["content_hash"][task]


def test_exports_load_with_datasets(task_exports):
    import datasets

    out, summary = task_exports
    for rel, n in summary["files"].items():
        if n == 0:
            continue
        ds = datasets.load_dataset("json", data_files=str(out / rel), split="train")
        assert len(ds) == n, rel
    chat = datasets.load_dataset("json", data_files=str(out / "chat" / "train.jsonl"), split="train")
    assert [m["role"] for m in chat[0]["messages"]] == ["system", "user", "assistant"]
    mc = datasets.load_dataset("json", data_files=str(out / "study" / "arm_design" / "train.jsonl"), split="train")
    assert {"id", "question", "options", "answer"} <= set(mc.column_names)
