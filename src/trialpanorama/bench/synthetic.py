"""Synthetic task tables in the exact ``<lake>/tasks/<task>`` contract, for tests and the throughput bench.

Rows are rendered with each task module's own ``to_messages`` (so prompts look like the real ones and the
real ``parse``/``score`` apply); inputs and references follow the modules' shapes. A small literature index
is built for study_search at ``<lake>/search/publications-v-1`` (what a reference without a publications
version points to). Building the real tables needs the whole ingest pipeline; these take a second.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from trialpanorama.tasks.base import SYSTEM_PROMPT, dumps, stable_hash
from trialpanorama.tasks.registry import TASKS, load_task

CONDITIONS = ["type 2 diabetes", "major depressive disorder", "breast cancer", "asthma", "chronic kidney disease",
              "rheumatoid arthritis", "hypertension", "Parkinson disease", "lung cancer", "heart failure"]
DRUGS = ["metformin", "sertraline", "trastuzumab", "budesonide", "dapagliflozin", "adalimumab", "amlodipine",
         "levodopa", "pembrolizumab", "sacubitril"]
PHASES = ["PHASE1", "PHASE2", "PHASE3", "PHASE4"]
LETTERS = "ABCD"


def _trial(rng: random.Random) -> dict[str, Any]:
    cond, drug = rng.choice(CONDITIONS), rng.choice(DRUGS)
    return {"title": f"A randomized study of {drug} in adults with {cond}", "conditions": cond,
            "phase": rng.choice(PHASES), "allocation": rng.choice(["RANDOMIZED", "NA"]),
            "masking": rng.choice(["NONE", "DOUBLE", "QUADRUPLE"]), "drug": drug}


def _mc(task: str, rng: random.Random) -> tuple[dict, dict]:
    t = _trial(rng)
    opts = {L: f"{L}: {rng.choice(DRUGS)} {rng.choice([5, 10, 50])} mg vs {rng.choice(['placebo', 'standard care'])}"
            for L in LETTERS}
    return ({"question": f"Which option fits this trial ({task.replace('_', ' ')})?", "trial": t, "options": opts},
            {"answer_choice": rng.choice(LETTERS)})


def _sample(task: str, i: int, rng: random.Random, pmids: list[str]) -> tuple[dict, dict]:
    if task in ("arm_design", "eligibility_criteria_design", "endpoint_design"):
        return _mc(task, rng)
    cond = rng.choice(CONDITIONS)
    review = {"title": f"{rng.choice(DRUGS)} for {cond}: a systematic review",
              "objectives": f"To assess the effects of treatments for {cond}.",
              "selection_criteria": "Randomized controlled trials in adults."}
    if task == "evidence_summary":
        studies = [{"PMID": p, "title": f"Trial of {cond} {p}", "abstract": f"Patients with {cond} improved."}
                   for p in rng.sample(pmids, 2)]
        opts = {L: f"Conclusion {L}: the evidence for {cond} is {w}." for L, w in
                zip(LETTERS, ["strong", "weak", "absent", "mixed"], strict=True)}
        return ({"review": review, "included_studies": studies, "options": opts},
                {"answer_choice": rng.choice(LETTERS)})
    if task == "study_screening":
        cands = [{"PMID": p, "title": f"Study {p} in {cond}", "abstract": f"A trial in {cond}."}
                 for p in rng.sample(pmids, 3)]
        return ({"review": review, "candidates": cands},
                {"decisions": {c["PMID"]: rng.choice(["include", "exclude"]) for c in cands}})
    if task == "study_search":
        inc = rng.sample(pmids, 3)
        return (review, {"included_pmids": inc, "publications_version": None, "title": review["title"],
                         "query": f'"{cond}"[tiab] AND ("randomized controlled trial"[pt])'})
    if task == "sample_size_estimation":
        t = _trial(rng)
        return ({**t, "primary_endpoint": "HbA1c change at 24 weeks", "arms": rng.choice([1, 2, 3])},
                {"sample_size": rng.choice([40, 120, 300, 800]), "phase": t["phase"], "condition_group": "x"})
    if task == "trial_completion_assessment":
        t = _trial(rng)
        term = rng.random() < 0.4
        return (t, {"outcome": "terminate" if term else "complete",
                    "reason_class": rng.choice(["enrollment", "safety", "feasibility"]) if term else None,
                    "reason_text": "slow accrual" if term else None})
    raise KeyError(task)


def publications(n: int = 60) -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [{"pmid": str(41000000 + i), "title": f"A randomized trial in {rng.choice(CONDITIONS)}",
             "abstract": f"We studied {rng.choice(DRUGS)} in patients.", "mesh_headings": [],
             "keywords": [], "publication_types": [{"name": "Randomized Controlled Trial"}], "year": 2020}
            for i in range(n)]


def task_rows(n_test: int = 4, n_train: int = 2, tasks: tuple[str, ...] = TASKS, seed: int = 0,
              long_prompts: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Rows per task in the task-table contract: ``n_test`` test and ``n_train`` train rows each."""
    pmids = [p["pmid"] for p in publications()]
    out: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        mod = load_task(task)
        rng = random.Random(f"{seed}-{task}")
        rows = []
        for i in range(n_test + n_train):
            inp, ref = _sample(task, i, rng, pmids)
            if long_prompts and rng.random() < 0.5:  # vary prompt lengths (padding waste in the bench)
                inp = {**inp, "notes": " ".join(rng.choice(CONDITIONS) for _ in range(rng.randint(5, 60)))}
            key = f"{seed}-{i}"
            row = {"sample_id": f"{task}-{stable_hash(task, key)[:16]}", "task": task, "task_version": mod.VERSION,
                   "split": "test" if i < n_test else "train", "input": dumps(inp), "reference": dumps(ref),
                   "trial_uids": [f"TP{i:07d}"], "pmids": [], "source_key": key}
            messages, answer = mod.to_messages(row)
            assert messages[0]["role"] == "system" and messages[0]["content"] == SYSTEM_PROMPT
            row["messages"], row["answer"] = messages, answer
            rows.append(row)
        out[task] = sorted(rows, key=lambda r: r["sample_id"])
    return out


def write_tables(lake_root: str | Path, rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Write the rows with delta-rs (no JVM) plus the study_search index; returns task -> Delta version."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from trialpanorama.lake import table_uri

    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schema = pa.schema([("sample_id", pa.string()), ("task", pa.string()), ("task_version", pa.string()),
                        ("split", pa.string()), ("input", pa.string()), ("reference", pa.string()),
                        ("messages", msg), ("answer", pa.string()), ("trial_uids", pa.list_(pa.string())),
                        ("pmids", pa.list_(pa.string())), ("source_key", pa.string())])
    versions = {}
    for task, rs in rows.items():
        path = table_uri(str(lake_root), task)
        write_deltalake(path, pa.Table.from_pylist(rs, schema=schema), mode="overwrite")
        versions[task] = DeltaTable(path).version()
    build_search_index(lake_root)
    return versions


def build_search_index(lake_root: str | Path) -> Path:
    from trialpanorama.search.build import index_root
    from trialpanorama.search.index import build_index, index_path

    path = index_path(index_root(str(lake_root), {}), -1)
    build_index(path, publications(), {"publications_version": None, "content_hash": "synthetic"})
    return path


def tiny_model(out_dir: str | Path, rows: dict[str, list[dict[str, Any]]], seed: int = 0) -> Path:
    """The training engineer's tiny random-init Llama + project BPE tokenizer, trained on these rows' text."""
    from trialpanorama.train.tiny import build_tiny_model

    texts = [m["content"] for rs in rows.values() for r in rs for m in r["messages"]]
    texts += [r["answer"] for rs in rows.values() for r in rs]
    return build_tiny_model(out_dir, texts, {"vocab_size": 1024}, max_position_embeddings=2048, seed=seed)
