"""Build the eight task tables (<lake>/tasks/<task>) from the lake, with splits, baselines and hashes.

    python jobs/build_tasks.py --lake ./lakehouse [--tasks arm_design,endpoint_design]

Reads gold trials/relations and silver tables at pinned versions (logged as inputs), writes one Delta table
per task (a snapshot: re-running on the same lake version and seed commits nothing), and logs per task and
split the sample counts, the content hash, non-LLM baseline scores, and the why_stopped classifier's
accuracy on its labelled set.
"""

from __future__ import annotations

from pathlib import Path

from trialpanorama import lake
from trialpanorama.config import load_sibling_yaml
from trialpanorama.jobrun import JobContext, main_guard, run_job
from trialpanorama.tasks import baselines
from trialpanorama.tasks.build import build_all, content_hash, to_frame
from trialpanorama.tasks.registry import TASKS
from trialpanorama.tasks.why_stopped import labelled_accuracy

LABELLED = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tasks" / "why_stopped_labelled.jsonl"


def add_args(parser) -> None:
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names (default: all)")


def body(ctx: JobContext) -> dict:
    cfg = load_sibling_yaml(ctx.cfg, "tasks.yaml")
    names = [n.strip() for n in ctx.args.tasks.split(",") if n.strip()]
    rows, info = build_all(ctx.spark, ctx.lake, cfg, names,
                           record_input=lambda t, v: ctx.run and ctx.run.table_version(t, v, role="input"))
    metrics: dict[str, float] = {}
    out: dict = {"samples": {}, "content_hash": {}, "baselines": {}, "dropped": {}}
    index = None
    if "study_search" in names and rows["study_search"]:
        from trialpanorama.search.index import LiteratureIndex

        index = LiteratureIndex(info["index_dir"])
    for name in names:
        written = lake.sync_snapshot(ctx.spark, ctx.lake, name, to_frame(ctx.spark, name, rows[name]))
        if written:
            ctx.record_write(written)
        st = info["stats"][name]
        digest = content_hash(rows[name])
        out["samples"][name] = {"train": st["train"], "test": st["test"]}
        out["dropped"][name] = {"leak": st["dropped_leak"], "assembly": st["dropped_assembly"]}
        out["content_hash"][name] = digest
        for k, v in st.items():
            metrics[f"{name}.{k}"] = v
        base = baselines.run(name, rows[name], cfg["split"]["seed"], index)
        out["baselines"][name] = {b: {k: round(v, 4) for k, v in m.items()} for b, m in base.items()}
        for b, m in base.items():
            metrics.update({f"{name}.baseline.{b}.{k}": v for k, v in m.items() if v == v})
    ws = labelled_accuracy(LABELLED)
    metrics["why_stopped.labelled_accuracy"] = ws["accuracy"]
    out["why_stopped_accuracy"] = round(ws["accuracy"], 4)
    out["index_dir"] = info["index_dir"]
    if ctx.run:
        import mlflow

        ctx.run.metrics({k.replace("@", "_at_"): v for k, v in metrics.items()})
        mlflow.set_tags({"tasks.seed": str(cfg["split"]["seed"]), "tasks.names": ",".join(names),
                         **{f"tasks.content_hash.{n}": h for n, h in out["content_hash"].items()}})
    return out


def main(argv: list[str] | None = None) -> dict:
    return run_job("build_tasks", __doc__.splitlines()[0], body, add_args=add_args, argv=argv)


if __name__ == "__main__":
    main_guard(main)
