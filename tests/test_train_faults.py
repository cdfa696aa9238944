"""Ray Train faults with MLflow on: a worker SIGKILLed, and separately the driver SIGKILLed and re-submitted.

Each run is a real ``python ray_apps/finetune.py`` process with its own local Ray cluster (``--address
local``) on the tiny-cpu recipe over the Spark-written fixture lake, logging to the real MLflow server of
conftest. After either fault the run must resume from its last checkpoint (not from step 0), reach the
planned final step, and leave an MLflow loss history with exactly one value for every step 1..N: the
replayed steps after the checkpoint must not be logged twice, and no step may be missing. The driver-kill run
is also the suite's end-to-end check of what a finished run records (params, lineage, checkpoints kept, the
registered model): one interrupted two-worker run proves both, at the cost of one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.fault_helpers import PY, ROOT, group_pids, job_env, kill_group, reap, spawn, tail, wait_group_gone

pytestmark = pytest.mark.heavy
FIXTURE_LAKE = ROOT / "tests" / "fixtures" / "train" / "lake"
RECIPE = ROOT / "conf" / "train" / "tiny-cpu.yaml"
STEPS = 9
ONE_STAGE = ("stages=[{name: sft, max_steps: %d, tasks: {arm_design: {weight: 1.0, version: 0}, "
             "trial_completion_assessment: {weight: 1.0, version: null}}}]")
KEYS = ("loss", "lr", "grad_norm", "tokens_per_s")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("trainfaults")
    shutil.copytree(FIXTURE_LAKE, base / "lake")
    return base


def _cmd(work: Path, run: str, *extra: str) -> list[str]:
    return [PY, str(ROOT / "ray_apps" / "finetune.py"), "--address", "local", "--config", str(RECIPE),
            "--lake", str(work / "lake"), "--set", f"model.path={work / 'model'}",
            "--set", f"data.cache_dir={work / 'cache'}", "--set", f"checkpoint.storage_path={work / 'runs'}",
            "--set", ONE_STAGE % STEPS, "--set", "checkpoint.every_steps=3", "--set", "eval.every_steps=null",
            "--set", "data.max_seq_len=256", "--set", f"run.name={run}",
            "--set", f"mlflow.registered_model=tp-faults-{run}", *extra]


def _progress(pids: Path) -> int:
    try:
        return int(json.loads((pids / "progress_rank0.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


def _wait_step(proc, pids: Path, at_least: int, log: Path, timeout: float = 900) -> int:
    deadline = time.monotonic() + timeout
    while _progress(pids) < at_least and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    step = _progress(pids)
    assert at_least <= step < STEPS, f"progress {step}, rc={proc.poll()}:\n{tail(log)}"
    return step


def _summary(log: Path) -> dict:
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def _mlflow_history(uri: str, run: str) -> tuple[object, dict[str, list[int]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("finetune")
    runs = client.search_runs([exp.experiment_id], f"tags.`trialpanorama.run_id` = '{run}'")
    assert len(runs) == 1, f"{len(runs)} MLflow runs for {run}"
    hist = {k: sorted(int(m.step) for m in client.get_metric_history(runs[0].info.run_id, k)) for k in KEYS}
    return runs[0], hist


def _assert_whole(hist: dict[str, list[int]]) -> None:
    for key, steps in hist.items():
        assert steps == list(range(1, STEPS + 1)), f"{key}: steps {steps} (want 1..{STEPS}, once each)"


def test_killed_worker_resumes_and_mlflow_history_has_each_step_once(work, mlflow_server):
    t0 = time.monotonic()
    pids, log = work / "pids-worker", work / "worker.log"
    proc = spawn(_cmd(work, "wkill", "--set", f"debug.pid_dir={pids}", "--set", "debug.step_sleep_s=1.5"),
                 log, env=job_env(MLFLOW_TRACKING_URI=mlflow_server), cwd=work)
    try:
        killed_at = _wait_step(proc, pids, 5, log)  # step 3's checkpoint registered, steps 4-5 logged
        victim = int((pids / "rank1.pid").read_text())
        os.kill(victim, signal.SIGKILL)
        rc = reap(proc, timeout=900)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert rc == 0, tail(log)
    assert _summary(log)["stages"]["sft"]["final_metrics"]["step"] == STEPS
    resumed = json.loads((pids / "resumed_rank0.json").read_text())["step"]
    assert resumed in (3, 6) and resumed < killed_at  # from a checkpoint, and steps were replayed
    assert int((pids / "rank1.pid").read_text()) != victim
    run, hist = _mlflow_history(mlflow_server, "wkill")
    _assert_whole(hist)
    assert run.info.status == "FINISHED"
    print(f"\nTRAIN worker-kill: killed at step {killed_at}, resumed from {resumed}, "
          f"loss steps {hist['loss']}, test_s={time.monotonic() - t0:.0f}")


def test_killed_driver_resubmitted_resumes_and_mlflow_history_has_each_step_once(work, mlflow_server):
    t0 = time.monotonic()
    pids, log = work / "pids-driver", work / "driver.log"
    cmd = _cmd(work, "dkill", "--set", f"debug.pid_dir={pids}", "--set", "debug.step_sleep_s=1.5",
               "--set", "eval.every_steps=4", "--set", "eval.batches=2")
    env = job_env(MLFLOW_TRACKING_URI=mlflow_server)
    proc = spawn(cmd, log, env=env, cwd=work)
    try:
        killed_at = _wait_step(proc, pids, 5, log)
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone; Ray's processes must follow it
        reap(proc)
        survivors = wait_group_gone(proc.pid, timeout=90)
    finally:
        left = group_pids(proc.pid)
        if left:
            os.killpg(proc.pid, signal.SIGKILL)
    assert survivors == [], f"Ray processes outlived their driver: {survivors}"
    stepped = _progress(pids)
    assert stepped == killed_at or stepped < STEPS  # nothing went on training behind our back
    (pids / "resumed_rank0.json").unlink(missing_ok=True)

    log2 = work / "driver-resubmit.log"
    again = spawn(cmd, log2, env=env, cwd=work)
    try:
        rc = reap(again, timeout=900)
    finally:
        if again.poll() is None:
            kill_group(again)
    assert rc == 0, tail(log2)
    summary = _summary(log2)
    assert summary["stages"]["sft"]["final_metrics"]["step"] == STEPS
    resumed = json.loads((pids / "resumed_rank0.json").read_text())["step"]
    assert resumed in (3, 6) and resumed < killed_at
    run, hist = _mlflow_history(mlflow_server, "dkill")
    assert run.info.run_id == summary["mlflow_run_id"]  # the re-submission reattached to the same run
    _assert_whole(hist)
    assert run.info.status == "FINISHED"
    _assert_run_record(work, mlflow_server, run, summary["stages"]["sft"], "dkill")
    print(f"\nTRAIN driver-kill: killed at step {killed_at}, resumed from {resumed}, "
          f"loss steps {hist['loss']}, test_s={time.monotonic() - t0:.0f}")


def _assert_run_record(work: Path, uri: str, run, stage: dict, name: str) -> None:  # noqa: ANN001
    """What a finished run leaves, after its interruption: two-worker DDP params, Delta lineage, every metric,
    the newest two checkpoints, a falling loss, and a registered model identical to the trained folder."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    client = MlflowClient(uri)
    registered = f"tp-faults-{name}"  # as _cmd registers it
    assert stage["steps"] == STEPS
    ckpts = sorted(p.name for p in (work / "runs" / f"{name}-sft").glob("checkpoint_0*"))
    assert ckpts == ["checkpoint_0000006", f"checkpoint_{STEPS:07d}"]  # keep: 2
    hf = Path(stage["hf_dir"])
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in hf.iterdir()}
    assert run.info.run_name == name
    assert run.data.tags["delta.input.arm_design.version"] == "0"
    assert run.data.tags["delta.input.trial_completion_assessment.version"] == "0"
    assert run.data.params["recipe.method"] == "full" and run.data.params["plan.global_batch"] == "16"
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"tasks/arm_design",
                                                                  "tasks/trial_completion_assessment"}
    loss = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)]
    assert sum(loss[-2:]) / 2 < sum(loss[:2]) / 2 - 0.3, loss  # from random init the loss must fall
    assert client.get_metric_history(run.info.run_id, "eval_loss")

    versions = client.search_model_versions(f"name='{registered}'")
    assert len(versions) == 1 and versions[0].run_id == run.info.run_id
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{registered}/{versions[0].version}",
                                                     dst_path=str(work / "dl")))
    tok = AutoTokenizer.from_pretrained(local / "components" / "tokenizer")
    assert tok.chat_template == (hf / "chat_template.jinja").read_text()
    model = AutoModelForCausalLM.from_pretrained(local / "model")
    trained = load_file(str(hf / "model.safetensors"))
    name0 = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(model.state_dict()[name0], trained[name0])
