"""Fine-tuning entry points on real Ray: ``ray job submit`` to a head started here, and the LoRA path.
(The two-worker run's MLflow record and registered model are checked after a driver kill in test_train_faults.)

Each run is a separate ``python ray_apps/finetune.py`` process (the plain-python path) with its own
private local cluster (``--address local``), so these tests never attach to another Ray cluster on the
machine; the job-submission test starts its own head on free ports and stops exactly that head.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cluster_helpers import free_ports, node_ports

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_LAKE = ROOT / "tests" / "fixtures" / "train" / "lake"
RECIPE = ROOT / "conf" / "train" / "tiny-cpu.yaml"
PY = sys.executable
ONE_STAGE = ("stages=[{name: sft, max_steps: %d, tasks: {arm_design: {weight: 1.0, version: 0}, "
             "trial_completion_assessment: {weight: 1.0, version: null}}}]")

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A lake (copy of the Spark-written fixture tables), and one model/cache shared by the runs."""
    base = tmp_path_factory.mktemp("ft")
    shutil.copytree(FIXTURE_LAKE, base / "lake")
    return base


def _args(work: Path, steps: int, *extra: str) -> list[str]:
    return ["--config", str(RECIPE), "--lake", str(work / "lake"),
            "--set", f"model.path={work / 'model'}", "--set", f"data.cache_dir={work / 'cache'}",
            "--set", f"checkpoint.storage_path={work / 'runs'}", "--set", ONE_STAGE % steps,
            "--set", "checkpoint.every_steps=3", "--set", "eval.every_steps=4", "--set", "eval.batches=2",
            "--set", "data.max_seq_len=256", *extra]


def _finetune(work: Path, steps: int, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([PY, str(ROOT / "ray_apps" / "finetune.py"), "--address", "local",
                           *_args(work, steps, *extra)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=work)


def _summary(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_ray_job_submit(work):
    """The entry point under `ray job submit` against a head started here (own ports, own process group)."""
    ray_bin = str(Path(PY).parent / "ray")
    port, dash = free_ports(2)
    temp = tempfile.mkdtemp(prefix="tpray", dir="/tmp")  # short: Ray's unix socket paths are length-limited
    # A throwaway head on 127.0.0.1 only: token auth (on by default in 2.60) is switched off for it.
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    # --block keeps `ray start` in the foreground; killing its process group stops exactly this head
    # (`ray stop` would stop every Ray cluster of this user on the machine).
    head = subprocess.Popen([ray_bin, "start", "--head", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                             "--dashboard-port", str(dash), "--node-ip-address", "127.0.0.1",
                             # every other port free too: Ray's defaults (job agent on 52365, ...) may be
                             # held by a local cluster of a test running in the other pytest worker
                             *node_ports(),
                             "--temp-dir", temp, "--block"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # the dashboard answers (e.g. 401 under token auth): it is up
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "ray head did not start"
                time.sleep(1)
        args = _args(work, 3, "--set", "run.name=job", "--set", "mlflow.enabled=false",
                     "--set", "eval.every_steps=null")
        # The dashboard answers before the head's job agent is up; Ray says so with "No available agent".
        agent_deadline = time.monotonic() + 180
        while True:
            job = subprocess.run([ray_bin, "job", "submit", "--address", address, "--", PY,
                                  str(ROOT / "ray_apps" / "finetune.py"), *args],
                                 capture_output=True, text=True, timeout=600, env=env, cwd=work)
            if "No available agent" not in job.stdout + job.stderr or time.monotonic() > agent_deadline:
                break
            time.sleep(5)
        assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
        assert "succeeded" in (job.stdout + job.stderr)
        assert json.loads((work / "runs" / "_stages" / "job-sft.json").read_text())["steps"] == 3
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def test_lora_run_trains_adapters_and_exports_a_merged_model(work):
    """method: lora through peft on the same loop: only adapters train; the export is a plain merged HF model."""
    import torch
    from safetensors.torch import load_file

    done = _summary(_finetune(work, 3, "--set", "run.name=lora", "--set", "mlflow.enabled=false",
                              "--set", "method=lora", "--set", "lora={r: 4, alpha: 8, dropout: 0.0, "
                              "target_modules: [q_proj, v_proj]}", "--set", "eval.every_steps=null",
                              "--set", "optim.lr=5.0e-2"))
    hf = Path(done["stages"]["sft"]["hf_dir"])
    assert (hf.parent / "adapter" / "adapter_config.json").exists()
    merged = load_file(str(hf / "model.safetensors"))
    assert not [k for k in merged if "lora" in k]  # merged: no adapter tensors left
    base = load_file(str(work / "model" / "model.safetensors"))
    q = "model.layers.0.self_attn.q_proj.weight"
    frozen = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(merged[frozen], base[frozen])  # untouched by LoRA
    assert not torch.equal(merged[q], base[q])  # B @ A merged into the targeted projection
