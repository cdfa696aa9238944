"""The leaderboard: models x task metrics as Markdown and a PNG chart, beside published numbers and baselines.

Rows: the benchmarked models (metrics re-computed from the predictions table), the study's published
zero-shot models (``conf/published_results.yaml``), and the task build's non-LLM baselines (majority,
random, ...) read from the latest ``build_tasks`` MLflow run, where that job logs them as
``<task>.baseline.<name>.<metric>`` (or from a JSON file ``{task: {baseline: {metric: value}}}``); a
baseline the build did not log is an empty cell. Fractions are shown as percentages like the paper; MAE
in participants.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from trialpanorama.config import PROJECT_ROOT

# (task, metric, header) in the paper's column order; the first metric of a task is its chart metric.
COLUMNS: list[tuple[str, str, str]] = [
    ("study_search", "recall@100", "search R@100"), ("study_search", "recall@500", "search R@500"),
    ("study_screening", "accuracy", "screen acc"), ("study_screening", "precision", "screen prec"),
    ("study_screening", "recall", "screen rec"),
    ("evidence_summary", "accuracy", "evsum acc"), ("evidence_summary", "macro_f1", "evsum F1"),
    ("arm_design", "accuracy", "arm acc"), ("arm_design", "macro_f1", "arm F1"),
    ("eligibility_criteria_design", "accuracy", "criteria acc"), ("eligibility_criteria_design", "macro_f1", "criteria F1"),
    ("endpoint_design", "accuracy", "endpoint acc"), ("endpoint_design", "macro_f1", "endpoint F1"),
    ("sample_size_estimation", "accuracy_within_20pct", "size acc"), ("sample_size_estimation", "mae", "size MAE"),
    ("trial_completion_assessment", "balanced_accuracy_outcome", "BAcc-out"),
    ("trial_completion_assessment", "balanced_accuracy_reason", "BAcc-reason"),
]
UNSCALED = {"mae"}


def load_published(path: str | Path | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """model -> task -> metric -> value in the displayed unit (percent; MAE raw)."""
    p = Path(path) if path else PROJECT_ROOT / "conf" / "published_results.yaml"
    if not p.is_absolute() and not p.is_file():
        p = PROJECT_ROOT / p
    data = yaml.safe_load(p.read_text()) or {}
    return {m: {t: {k: float(v) for k, v in ms.items()} for t, ms in tasks.items()}
            for m, tasks in (data.get("models") or {}).items()}


def baselines_from_mlflow(tracking_uri: str, experiment: str = "pipeline") -> dict[str, dict[str, dict[str, float]]]:
    """task -> baseline -> metric from the newest finished ``build_tasks`` run (empty when there is none)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    runs = mlflow.search_runs([exp.experiment_id], filter_string="tags.job = 'build_tasks'", output_format="list",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key, value in runs[0].data.metrics.items():
        parts = key.split(".")
        if len(parts) >= 4 and parts[1] == "baseline":
            task, base, metric = parts[0], parts[2], ".".join(parts[3:]).replace("_at_", "@")
            out.setdefault(task, {}).setdefault(base, {})[metric] = float(value)
    return out


def load_baselines(source: Any, tracking_uri: str) -> dict[str, dict[str, dict[str, float]]]:
    if not source:
        return {}
    if source == "mlflow":
        try:
            return baselines_from_mlflow(tracking_uri)
        except Exception:  # noqa: BLE001 - a leaderboard without baselines beats no leaderboard
            return {}
    return json.loads(Path(source).read_text())


def _display(metric: str, value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value) if metric in UNSCALED else 100.0 * float(value)


def build_rows(results: dict[str, dict[str, dict[str, float]]], published: dict[str, dict[str, dict[str, float]]],
               baselines: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """One row per model / published model / baseline: {'name', 'kind', 'values': {(task, metric): v}}."""
    rows: list[dict[str, Any]] = []
    for name, tasks in results.items():
        rows.append({"name": name, "kind": "this run",
                     "values": {(t, m): _display(m, tasks.get(t, {}).get(m)) for t, m, _ in COLUMNS}})
    for name, tasks in published.items():
        rows.append({"name": name, "kind": "published zero-shot",
                     "values": {(t, m): tasks.get(t, {}).get(m) for t, m, _ in COLUMNS}})
    names = sorted({b for per in baselines.values() for b in per})
    for b in names:
        rows.append({"name": f"baseline: {b}", "kind": "task baseline",
                     "values": {(t, m): _display(m, baselines.get(t, {}).get(b, {}).get(m)) for t, m, _ in COLUMNS}})
    if not baselines:
        rows.append({"name": "baseline: (not logged)", "kind": "task baseline",
                     "values": {(t, m): None for t, m, _ in COLUMNS}})
    return rows


def markdown(rows: list[dict[str, Any]], title: str, notes: list[str]) -> str:
    head = "| model | kind | " + " | ".join(h for _, _, h in COLUMNS) + " |"
    sep = "|---|---|" + "---:|" * len(COLUMNS)
    lines = [f"# {title}", "", head, sep]
    for r in rows:
        cells = ["" if r["values"][(t, m)] is None else f"{r['values'][(t, m)]:.1f}" for t, m, _ in COLUMNS]
        lines.append(f"| {r['name']} | {r['kind']} | " + " | ".join(cells) + " |")
    lines += ["", "Percentages except size MAE (participants). " + " ".join(notes), ""]
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Grouped bars: each task's headline metric, one bar per row (models, published, baselines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads, seen = [], set()
    for t, m, h in COLUMNS:
        if t not in seen and m not in UNSCALED:
            heads.append((t, m, h))
            seen.add(t)
    fig, ax = plt.subplots(figsize=(max(10, 1.6 * len(heads)), 5.5))
    width = 0.8 / max(1, len(rows))
    for i, r in enumerate(rows):
        xs = [j + i * width - 0.4 + width / 2 for j in range(len(heads))]
        ys = [r["values"][(t, m)] or 0.0 for t, m, _ in heads]
        hatch = "//" if r["kind"] == "published zero-shot" else (".." if r["kind"] == "task baseline" else None)
        ax.bar(xs, ys, width, label=f"{r['name']} ({r['kind']})", hatch=hatch)
    ax.set_xticks(range(len(heads)))
    ax.set_xticklabels([h for _, _, h in heads], rotation=20, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_leaderboard(results: dict[str, dict[str, dict[str, float]]], out_dir: str | Path, title: str,
                      published_path: str | Path | None = None, baselines: dict | None = None,
                      notes: list[str] | None = None) -> dict[str, str]:
    """leaderboard.md + leaderboard.png (+ leaderboard.json) in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = build_rows(results, load_published(published_path), baselines or {})
    md = out / "leaderboard.md"
    md.write_text(markdown(rows, title, notes or []))
    png = chart(rows, out / "leaderboard.png", title)
    js = out / "leaderboard.json"
    js.write_text(json.dumps([{"name": r["name"], "kind": r["kind"],
                               "values": {f"{t}.{m}": v for (t, m), v in r["values"].items()}} for r in rows], indent=1))
    return {"markdown": str(md), "png": str(png), "json": str(js)}


def leaderboard_for_run(spec: Any, tracking_uri: str, out: dict[str, Any]) -> dict[str, str]:
    """The leaderboard of one benchmark run, written to its output folder and logged to an MLflow run."""
    import mlflow

    results = {name: m["tasks"] for name, m in out["models"].items()}
    folder = Path(spec.output_dir) / spec.run_id
    base = load_baselines(spec.leaderboard.get("baselines", "mlflow"), tracking_uri)
    notes = ["Published numbers are the study's (different test sets; search scored on live PubMed)."]
    paths = write_leaderboard(results, folder, f"TrialPanorama benchmark {spec.run_id}",
                              spec.leaderboard.get("published"), base, notes)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(spec.experiment)
    with mlflow.start_run(run_name=f"leaderboard@{spec.run_id}",
                          tags={"job": "leaderboard", "bench.run_id": spec.run_id}):
        for p in paths.values():
            mlflow.log_artifact(p, "leaderboard")
    client = mlflow.MlflowClient()
    for m in out["models"].values():  # also beside each model's metrics
        if not m.get("mlflow_run_id"):
            continue
        for p in (paths["markdown"], paths["png"]):
            client.log_artifact(m["mlflow_run_id"], p, "leaderboard")
    return paths
