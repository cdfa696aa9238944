"""Pairwise precision and recall of jobs/unify_trials.py against a generated world's true duplicate clusters.

    python benchmarks/score_unify.py --lake lakehouse --world .cache/demo-world

A pair is two lake studies of the world; it is a true pair when the generator put both in one trial
(truth/clusters.jsonl), a predicted pair when unify gave both one trial_uid. Studies of other sources in the
lake (the panorama import) are left out. Prints one JSON line; reads the Delta table with delta-rs (no Spark).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", default="lakehouse")
    ap.add_argument("--world", default=".cache/demo-world")
    args = ap.parse_args()
    from deltalake import DeltaTable

    members = DeltaTable(str(Path(args.lake).resolve() / "gold" / "trial_members")).to_pyarrow_table(
        columns=["study_id", "trial_uid"]).to_pylist()
    uid = {m["study_id"]: m["trial_uid"] for m in members}
    truth: dict[str, str] = {}  # lake study_id -> true trial
    unmatched = 0
    for line in (Path(args.world) / "truth" / "clusters.jsonl").open():
        cluster = json.loads(line)
        for m in cluster["members"]:
            found = next((c for c in [m["id"], m.get("bare"), *m.get("records", [])] if c in uid), None)
            if found is None:
                unmatched += 1
            else:
                truth[found] = cluster["trial"]

    def pairs(groups: dict[str, list[str]]) -> set[tuple[str, str]]:
        return {p for g in groups.values() for p in itertools.combinations(sorted(g), 2)}

    by_true, by_pred = defaultdict(list), defaultdict(list)
    for sid, trial in truth.items():
        by_true[trial].append(sid)
        by_pred[uid[sid]].append(sid)
    t, p = pairs(by_true), pairs(by_pred)
    tp = len(t & p)
    print(json.dumps({
        "studies_scored": len(truth), "truth_members_not_in_lake": unmatched,
        "true_pairs": len(t), "predicted_pairs": len(p), "correct_pairs": tp,
        "precision": round(tp / len(p), 4) if p else 1.0, "recall": round(tp / len(t), 4) if t else 1.0,
        "true_trials": len(by_true), "predicted_trials": len(by_pred),
    }))


if __name__ == "__main__":
    main()
