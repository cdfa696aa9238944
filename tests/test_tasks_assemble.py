"""The split-then-assemble procedure on hand-made lake data (no Spark): leakage, determinism, answers.

The same code path as jobs/build_tasks.py after the Spark read (``build.assemble_all``), on 60 trials and 8
reviews written below, so the cross-task leakage rule and the perfect-answer round trip are checked in
seconds; tests/test_tasks_build.py runs the real jobs on the fixture lake.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import ROOT
from trialpanorama.tasks.build import BuildContext, assemble_all, content_hash
from trialpanorama.tasks.data import LakeData
from trialpanorama.tasks.registry import TASKS, load_task

CONDS = [("D001249", "Asthma"), ("D006973", "Hypertension")]
WHY = ["Slow accrual", "Safety concerns", "Lack of efficacy", "Sponsor decision", "FDA clinical hold"]


def trial(i: int) -> dict:
    mesh, name = CONDS[i % 2]
    status = "TERMINATED" if i % 3 == 0 else "COMPLETED"
    return {
        "title": f"Trial {i} of drug{i} in {name}", "abstract": f"A study of drug{i}.", "phase": ["PHASE2", "PHASE3"][i % 2],
        "study_type": "INTERVENTIONAL", "allocation": "RANDOMIZED", "overall_status": status,
        "why_terminated": WHY[i % 5] if status == "TERMINATED" else None, "enrollment": 50 + 10 * i,
        "enrollment_type": "ACTUAL",
        "conditions": [{"origin": "registry", "condition_name": name, "condition_mesh_id": mesh}],
        "arms": [{"arm_label": f"Drug{i}", "group_type": "EXPERIMENTAL", "description": f"drug{i} daily",
                  "intervention_names": [f"drug{i}"]},
                 {"arm_label": "Placebo", "group_type": "PLACEBO_COMPARATOR", "description": "", "intervention_names": []}],
        "endpoints": [{"endpoint_type": "primary", "seq": 0, "measure": f"Outcome {i}", "time_frame": "12 weeks"}],
        "eligibility": {"inclusion_criteria": [f"Adults with {name}", f"criterion {i}"], "exclusion_criteria": ["Pregnancy"]},
    }


def lake_data() -> LakeData:
    trials = {f"T{i:03d}": trial(i) for i in range(60)}
    pubs, pub_trials, cites = {}, {}, {}
    for r in range(8):
        mesh, name = CONDS[r % 2]
        review = f"9{r:03d}000"
        included = [f"9{r:03d}00{k}" for k in range(1, 4)]
        for k, p in enumerate(included):
            pubs[p] = {"pmid": p, "title": f"Randomised trial {k} of drug{r} in {name}", "abstract": f"drug{r} helped.",
                       "publication_types": [{"ui": "D016449", "name": "Randomized Controlled Trial"}],
                       "mesh_headings": [{"descriptor_ui": mesh, "descriptor_name": name}]}
            if r < 2:  # only two reviews include registered trials (the rest: papers without a registry link)
                pub_trials[p] = {f"T{(r * 3 + k):03d}"}
        neg = f"9{r:03d}009"
        pubs[neg] = {"pmid": neg, "title": f"Survey of {name} and drug{r}", "abstract": "Survey.",
                     "publication_types": [], "mesh_headings": [{"descriptor_ui": mesh, "descriptor_name": name}]}
        pubs[review] = {
            "pmid": review, "title": f"drug{r} for {name}: a systematic review",
            "publication_types": [{"ui": "D000078182", "name": "Systematic Review"}],
            "mesh_headings": [{"descriptor_ui": mesh, "descriptor_name": name}],
            "abstract_sections": [
                {"label": "BACKGROUND", "nlm_category": "BACKGROUND", "text": f"{name} is common."},
                {"label": "OBJECTIVES", "nlm_category": "OBJECTIVE", "text": f"To assess drug{r} in {name}."},
                {"label": "SELECTION CRITERIA", "nlm_category": "METHODS", "text": f"RCTs of drug{r}."},
                {"label": "AUTHORS' CONCLUSIONS", "nlm_category": "CONCLUSIONS", "text": f"drug{r} works ({r})."}]}
        cites[review] = sorted(included)
    return LakeData({"publications": 3}, trials, pubs, pub_trials, cites)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cfg = yaml.safe_load((ROOT / "conf" / "tasks.yaml").read_text())
    root = tmp_path_factory.mktemp("asm")
    runs = [assemble_all(BuildContext(None, str(root / "lake"), cfg, lake_data()), list(TASKS)) for _ in range(2)]
    return runs


def test_every_task_builds_train_and_test(built):
    rows, info = built[0]
    for task in TASKS:
        splits = {r["split"] for r in rows[task]}
        assert splits == {"train", "test"}, (task, info["stats"][task])


def test_no_test_trial_or_paper_in_any_training_sample(built):
    rows, _ = built[0]
    test_t = {u for rs in rows.values() for r in rs if r["split"] == "test" for u in r["trial_uids"]}
    test_p = {p for rs in rows.values() for r in rs if r["split"] == "test" for p in r["pmids"]}
    for rs in rows.values():
        for r in rs:
            if r["split"] == "train":
                assert not set(r["trial_uids"]) & test_t and not set(r["pmids"]) & test_p, r["sample_id"]


def test_same_data_same_tables(built):
    (a, _), (b, _) = built
    assert {t: content_hash(a[t]) for t in TASKS} == {t: content_hash(b[t]) for t in TASKS}


def test_reference_answers_parse_and_score_perfectly(built):
    rows, info = built[0]
    for task in TASKS:
        mod = load_task(task)
        preds = [mod.parse(r["answer"]) for r in rows[task]]
        refs = [r["reference"] for r in rows[task]]
        if task == "study_search":
            assert all(isinstance(p, str) and p != "unparseable" for p in preds)
            m = mod.score(preds, refs, index=info["index_dir"])
            assert m["query_errors"] == 0 and m["recall@100"] > 0.5, m
            continue
        m = mod.score(preds, refs)
        key = {"sample_size_estimation": "accuracy_within_20pct",
               "trial_completion_assessment": "balanced_accuracy_outcome"}.get(task, "accuracy")
        assert m[key] == 1.0, (task, m)
        if task == "trial_completion_assessment":
            assert m["balanced_accuracy_reason"] == 1.0 and m["n_reason"] > 0


def test_multiple_choice_distractors_share_the_condition(built):
    rows, _ = built[0]
    data = lake_data()
    for r in rows["arm_design"]:
        ref = json.loads(r["reference"])
        own = data.trials[r["source_key"]]["conditions"][0]["condition_mesh_id"]
        assert all(data.trials[k]["conditions"][0]["condition_mesh_id"] == own for k in ref["distractor_keys"])
        assert len(json.loads(r["input"])["options"]) == 4


def test_exports_load_with_datasets(built, tmp_path):
    import datasets

    from trialpanorama.tasks.export import export

    rows, _ = built[0]
    counts = export(rows, tmp_path)
    for rel, n in counts.items():
        if n:
            assert len(datasets.load_dataset("json", data_files=str(tmp_path / rel), split="train")) == n, rel
