"""Write task rows as files other tools read: chat JSONL, the study's <task>/{train,test}.jsonl, alpaca JSON.

- ``chat/{train,test}.jsonl``: {"messages": [system, user, assistant], "sample_id", "task", "split"}, all
  tasks mixed (the training recipes pick tasks by the ``task`` field).
- ``study/<task>/{train,test}.jsonl``: the field names of the public TrialPanorama code where it shows them:
  multiple choice ``id, question, options, answer``; sample size ``id, question, answer``; completion
  ``metadata, inputs, context, labels`` (labels.terminate_type in the study's wording); search and screening
  (no public layout) ``id`` + review fields + ``included_pmids`` / ``candidates`` + ``labels``.
- ``alpaca/{train,test}.json`` + ``dataset_info.json``: LLaMA-Factory's alpaca format (instruction, input,
  output, system).
Every file loads with ``datasets.load_dataset("json", data_files=...)`` (tests check it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MC = {"arm_design", "eligibility_criteria_design", "endpoint_design", "evidence_summary"}
STUDY_REASON = {"enrollment": "enrollment issues", "feasibility": "feasibility", "lack_of_efficacy": "lack of efficacy",
                "regulatory": "regulatory/approval", "safety": "safety issues"}


def _user(row: dict[str, Any]) -> str:
    return next(m["content"] for m in row["messages"] if m["role"] == "user")


def _system(row: dict[str, Any]) -> str:
    return next((m["content"] for m in row["messages"] if m["role"] == "system"), "")


def chat_record(row: dict[str, Any]) -> dict[str, Any]:
    msgs = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    return {"messages": [*msgs, {"role": "assistant", "content": row["answer"]}],
            "sample_id": row["sample_id"], "task": row["task"], "split": row["split"]}


def alpaca_record(row: dict[str, Any]) -> dict[str, Any]:
    return {"instruction": _user(row), "input": "", "output": row["answer"], "system": _system(row),
            "task": row["task"], "sample_id": row["sample_id"]}


def study_record(row: dict[str, Any]) -> dict[str, Any]:
    """One line of the study's layout for this task."""
    task, inp, ref = row["task"], json.loads(row["input"]), json.loads(row["reference"])
    sid = row["sample_id"]
    if task in MC:
        question = _user(row).split("\n\nOptions:\n")[0]
        return {"id": sid, "question": question, "options": inp["options"], "answer": ref["answer_choice"]}
    if task == "sample_size_estimation":
        return {"id": sid, "question": _user(row), "answer": int(ref["sample_size"])}
    if task == "trial_completion_assessment":
        e = inp.get("eligibility") or {}
        inputs = {k: v for k, v in inp.items() if k not in ("eligibility", "arms", "conditions")}
        return {
            "metadata": {"study_nctid": row["source_key"], "sample_id": sid},
            "inputs": inputs,
            "context": [
                {"type": "eligibility_criteria", "criteria": e.get("criteria", ""), "gender": e.get("sex"),
                 "minimum_age": e.get("min_age"), "maximum_age": e.get("max_age"), "arms": None},
                {"type": "arm_design", "criteria": None, "gender": None, "minimum_age": None, "maximum_age": None,
                 "arms": [{"title": a["title"], "group_type": a["group_type"], "description": a["description"]}
                          for a in inp.get("arms") or []]},
            ],
            "labels": {"outcome": ref["outcome"], "terminate_type": STUDY_REASON.get(ref["reason_class"] or "", ""),
                       "terminate_reason_desc": ref["reason_text"] or ""},
        }
    if task == "study_search":
        return {"id": sid, **{k: inp.get(k, "") for k in ("title", "background", "objectives", "selection_criteria")},
                "included_pmids": ref["included_pmids"]}
    if task == "study_screening":
        return {"id": sid, "review": {k: inp["review"].get(k, "") for k in
                                      ("title", "background", "objectives", "selection_criteria")},
                "candidates": inp["candidates"],
                "labels": [{"PMID": c["PMID"], "decision": ref["decisions"][c["PMID"]]} for c in inp["candidates"]]}
    raise KeyError(task)


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def export(rows_by_task: dict[str, list[dict[str, Any]]], out: str | Path) -> dict[str, int]:
    """Write all three layouts under ``out``; returns the number of records per file (relative path)."""
    out = Path(out)
    counts: dict[str, int] = {}
    for split in ("train", "test"):
        rows = sorted((r for rs in rows_by_task.values() for r in rs if r["split"] == split),
                      key=lambda r: (r["task"], r["sample_id"]))
        _jsonl(out / "chat" / f"{split}.jsonl", [chat_record(r) for r in rows])
        counts[f"chat/{split}.jsonl"] = len(rows)
        (out / "alpaca").mkdir(parents=True, exist_ok=True)
        (out / "alpaca" / f"{split}.json").write_text(
            json.dumps([alpaca_record(r) for r in rows], ensure_ascii=False, indent=1), encoding="utf-8")
        counts[f"alpaca/{split}.json"] = len(rows)
        for task, trows in rows_by_task.items():
            recs = [study_record(r) for r in sorted(trows, key=lambda r: r["sample_id"]) if r["split"] == split]
            _jsonl(out / "study" / task / f"{split}.jsonl", recs)
            counts[f"study/{task}/{split}.jsonl"] = len(recs)
    info = {f"trialpanorama_{s}": {"file_name": f"{s}.json", "columns": {
        "prompt": "instruction", "query": "input", "response": "output", "system": "system"}} for s in ("train", "test")}
    (out / "alpaca" / "dataset_info.json").write_text(json.dumps(info, indent=1))
    return counts
