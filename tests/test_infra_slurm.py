"""infra/slurm: the sbatch scripts parse (bash -n), pass shellcheck, and with the SLURM_* variables of a
faked allocation print exactly the commands they would run (--dry-run; no Slurm here)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "infra" / "slurm"
SCRIPTS = sorted(SLURM.glob("*.sbatch"))
PY = str(ROOT / ".venv" / "bin" / "python")


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    assert found, f"{name} not installed: it is in the [dev] extras (make setup)"
    return found


def test_there_are_the_two_scripts():
    assert [p.name for p in SCRIPTS] == ["ray-finetune.sbatch", "spark-pipeline.sbatch"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_n_and_shellcheck(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    out = subprocess.run([_tool("shellcheck"), str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_shellcheck_bites(tmp_path):
    bad = tmp_path / "bad.sbatch"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $DIR/*\n")
    assert subprocess.run([_tool("shellcheck"), str(bad)], capture_output=True).returncode != 0


def _dry(script: str, args: list[str], env: dict[str, str]) -> list[list[str]]:
    # No scontrol on PATH: the scripts then split a plain comma list of nodes themselves.
    base = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "SLURM_SUBMIT_DIR": str(ROOT)}
    out = subprocess.run(["bash", str(SLURM / script), "--dry-run", *args], capture_output=True, text=True,
                         timeout=60, env={**base, **env}, cwd="/")
    assert out.returncode == 0, out.stderr
    return [shlex.split(line[2:].removesuffix(" &")) for line in out.stdout.splitlines() if line.startswith("+ ")]


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_ray_finetune_dry_run():
    env = {"SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "3", "SLURM_JOB_NODELIST": "gpu07,gpu08,gpu09",
           "SLURM_GPUS_PER_NODE": "h100:4", "SLURM_CPUS_PER_TASK": "48"}
    (cmd,) = _dry("ray-finetune.sbatch", ["--recipe", "conf/train/llama3-8b-lora.yaml", "--",
                                          "--set", "stages.stage1.max_steps=5"], env)
    assert cmd[:4] == ["srun", "--nodes=3", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    sym = cmd[4:]
    assert sym[0] == str(ROOT / ".venv/bin/ray") and sym[1] == "symmetric-run"
    head = sym[: sym.index("--")]
    assert _flag(head, "--address") == "gpu07:6379" and _flag(head, "--min-nodes") == "3"
    assert _flag(head, "--num-gpus") == "4" and _flag(head, "--num-cpus") == "48"
    assert _flag(head, "--temp-dir") == "/tmp/ray-77"
    assert not {"--head", "--port", "--block", "--node-ip-address"} & set(head), "symmetric-run forbids these"
    entry = sym[sym.index("--") + 1:]
    assert entry[:2] == [PY, "ray_apps/finetune.py"] and (ROOT / entry[1]).is_file()
    assert _flag(entry, "--config") == "conf/train/llama3-8b-lora.yaml"
    assert _flag(entry, "--address") == "gpu07:6379"
    sets = [entry[i + 1] for i, w in enumerate(entry) if w == "--set"]
    assert sets == ["resources.num_nodes=3", "resources.workers_per_node=4", "resources.num_workers=12",
                    "stages.stage1.max_steps=5"]


def test_ray_finetune_refuses_outside_an_allocation():
    out = subprocess.run(["bash", str(SLURM / "ray-finetune.sbatch"), "--dry-run"], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode != 0 and "SLURM_JOB_ID" in out.stderr


def test_spark_pipeline_dry_run_runs_every_stage_in_order():
    env = {"SLURM_JOB_ID": "88", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "cn01,cn02",
           "SLURM_CPUS_PER_TASK": "16", "SLURM_MEM_PER_NODE": "64000", "LAKE": "/scratch/lake", "RAW": "/scratch/raw"}
    cmds = _dry("spark-pipeline.sbatch", [], env)
    master, worker, *submits = cmds
    assert master[:4] == ["srun", "--overlap", "--nodes=1", "--ntasks=1"] and _flag(master, "-w") == "cn01"
    assert "org.apache.spark.deploy.master.Master" in master and _flag(master, "--port") == "7077"
    assert worker[:3] == ["srun", "--overlap", "--nodes=2"] and "org.apache.spark.deploy.worker.Worker" in worker
    assert worker[-1] == "spark://cn01:7077" and _flag(worker, "--cores") == "16"
    assert _flag(worker, "--memory") == "54400m"
    assert Path(master[master.index("org.apache.spark.deploy.master.Master") - 1]).name == "spark-class"
    # The same stages, in the same order, as the Kubernetes pipeline.
    stages = [s["job"] for s in yaml.safe_load((ROOT / "infra/k8s/stages.yaml").read_text())["spark"]["stages"]]
    jobs = [next(w for w in c if w.startswith("jobs/")) for c in submits]
    assert jobs == [f"jobs/{s}.py" for s in stages]
    for cmd in submits:
        assert Path(cmd[0]).name == "spark-submit" and _flag(cmd, "--master") == "spark://cn01:7077"
        assert _flag(cmd, "--properties-file") == "conf/spark-defaults.conf"
        assert _flag(cmd, "--lake") == "/scratch/lake" and _flag(cmd, "--config") == "conf/pipeline.yaml"
    by_job = {next(w for w in c if w.startswith("jobs/")): c for c in submits}
    assert _flag(by_job["jobs/ingest_ctgov.py"], "--input") == "/scratch/raw/ctgov"
    assert _flag(by_job["jobs/export_tasks.py"], "--out") == str(ROOT / "exports")


def test_spark_pipeline_runs_a_chosen_subset():
    env = {"SLURM_JOB_ID": "9", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "n1"}
    cmds = _dry("spark-pipeline.sbatch", ["--stages", "build_tasks check_leakage"], env)
    assert [next(w for w in c if w.startswith("jobs/")) for c in cmds[2:]] == ["jobs/build_tasks.py",
                                                                              "jobs/check_leakage.py"]
