"""Secrets and exposure: keys only from the environment, never written anywhere; services on loopback; MLflow auth.

Builds on tests/test_bench_e2e.py (which scans MLflow and the Ray session of an in-process benchmark) by
running the jobs as users do, as subprocesses with the key only in their environment: ``ray_apps/serve.py``
behind a bearer key, ``ray_apps/benchmark.py`` through the ``openai`` backend against it (its own Ray temp
dir), and a Spark ingest with event logging on. Then everything those runs wrote is scanned: MLflow params,
tags, metric names and artifacts (through the tracking server, and its artifact folder and database on disk),
the Ray temp dir, the Spark event logs, every stdout/stderr, and the lakes (files and Delta rows).
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import FIXTURES, ROOT, TEST_OVERRIDES, free_port, wait_http

pytestmark = pytest.mark.heavy
KEY_ENV = "TP_SECRETS_TEST_KEY"
KEY = "tp-secret-" + os.urandom(12).hex()
LOOPBACK = {"127.0.0.1", "::1"}


def listening_ips(port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def make_recipe(target: str, **variables: str) -> str:
    """The shell command a Makefile target runs (``make -n``), without its prerequisites' recipes."""
    args = ["make", "-n", "-s", "-C", str(ROOT), target, *[f"{k}={v}" for k, v in variables.items()]]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    joined = text.replace("\\\n", " ")
    line = next(ln for ln in joined.splitlines() if "mlflow server" in ln)
    return line.replace(".venv/bin/", f"{ROOT}/.venv/bin/")


def mlflow_home_of(uri: str) -> tuple[Path | None, Path | None]:
    """(artifact folder, database file) of the tracking server listening on ``uri``'s port, from its command line."""
    port = int(uri.rsplit(":", 1)[1])
    pids = {c.pid for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    for pid in pids:
        procs = [psutil.Process(pid)]
        procs += procs[0].parents()
        for p in procs:
            cmd = p.cmdline()
            if "--artifacts-destination" in cmd and "--backend-store-uri" in cmd:
                art = Path(cmd[cmd.index("--artifacts-destination") + 1])
                db = Path(cmd[cmd.index("--backend-store-uri") + 1].removeprefix("sqlite:///"))
                return art, db
    return None, None


# ------------------------------------------------------------------------------------------ the runs
@pytest.fixture(scope="module")
def runs(mlflow_server):
    from trialpanorama.bench import synthetic

    base = Path(tempfile.mkdtemp(prefix="tpsec-"))  # short: Ray's socket paths must stay under 107 bytes
    env = {**os.environ, KEY_ENV: KEY, "AWS_SECRET_ACCESS_KEY": KEY, "MLFLOW_TRACKING_URI": mlflow_server,
           "RAY_TMPDIR": str(base / "ray"), "PYTHONUNBUFFERED": "1"}
    rows = synthetic.task_rows(2, 2)
    synthetic.write_tables(base / "lake", rows)
    synthetic.write_tables(base / "lake", rows)  # version 1, as in test_bench_e2e (MLflow's Delta source drops a 0)
    model = synthetic.tiny_model(base / "tiny", rows)
    port = free_port()
    serve_log = base / "serve.log"
    serve = subprocess.Popen([sys.executable, str(ROOT / "ray_apps" / "serve.py"), "--model", f"tiny={model}",
                              "--port", str(port), "--api-key-env", KEY_ENV, "--torch-threads", "1"],
                             stdout=open(serve_log, "w"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
    try:
        wait_http(f"http://127.0.0.1:{port}/health", serve, serve_log, auth_counts_as_up=True)
        serve_ips = listening_ips(port)
        cfg = yaml.safe_load((ROOT / "conf" / "bench" / "tiny-cpu.yaml").read_text())
        cfg.update({"lake": {"root": str(base / "lake")}, "run_id": "secrets", "output_dir": str(base / "out"),
                    "flush_rows": 4, "generation": {"max_new_tokens": 8, "temperature": 0.0},
                    "ray": {"num_cpus": 2, "object_store_mb": 128},  # 1 CPU: the read tasks never start
                    "models": {"served": {"backend": "openai", "openai": {
                        "base_url": f"http://127.0.0.1:{port}/v1", "model": "tiny", "api_key_env": KEY_ENV,
                        "max_concurrency": 2, "requests_per_minute": 6000, "timeout_s": 120}}}})
        (base / "bench.yaml").write_text(yaml.safe_dump(cfg))
        bench = subprocess.run([sys.executable, str(ROOT / "ray_apps" / "benchmark.py"), "--config",
                                str(base / "bench.yaml")], capture_output=True, text=True, env=env, timeout=1500)
    finally:
        stop(serve)
    (base / "bench.stdout").write_text(bench.stdout)
    (base / "bench.stderr").write_text(bench.stderr)
    assert bench.returncode == 0, bench.stderr[-3000:]
    events = base / "spark-events"
    events.mkdir()
    sets = [x for item in TEST_OVERRIDES for x in ("--set", item)]
    ingest = subprocess.run([sys.executable, str(ROOT / "jobs" / "ingest_ctgov.py"), "--input",
                             str(FIXTURES / "ctgov" / "single"), "--lake", str(base / "spark-lake"), *sets,
                             "--set", "spark.conf.spark.eventLog.enabled=true",
                             "--set", f"spark.conf.spark.eventLog.dir=file://{events}"],
                            capture_output=True, text=True, env=env, timeout=1500, cwd=base)
    (base / "ingest.stdout").write_text(ingest.stdout)
    (base / "ingest.stderr").write_text(ingest.stderr)
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    yield {"base": base, "serve_ips": serve_ips, "uri": mlflow_server}
    shutil.rmtree(base, ignore_errors=True)


def test_key_reaches_no_file_run_or_log(runs, spark, tmp_path):
    import mlflow

    base = runs["base"]
    texts: dict[str, bytes] = {}
    client = mlflow.MlflowClient(runs["uri"])
    n_runs = 0
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            n_runs += 1
            texts[f"run {run.info.run_id} data"] = repr((run.data.params, run.data.tags, list(run.data.metrics),
                                                          run.info.run_name)).encode()
            dst = tmp_path / run.info.run_id
            mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(dst), tracking_uri=runs["uri"])
            texts.update({f"artifact {p}": p.read_bytes() for p in dst.rglob("*") if p.is_file()})
    art, db = mlflow_home_of(runs["uri"])
    assert art is not None and db is not None and db.is_file()
    on_disk = [db, *[p for p in art.rglob("*") if p.is_file()]]
    on_disk += [p for p in base.rglob("*") if p.is_file() and p.stat().st_size < 200 * 2**20]
    texts.update({f"file {p}": p.read_bytes() for p in on_disk})
    # what each part wrote, so that an empty scan cannot pass
    assert n_runs >= 2 and any("artifact" in k for k in texts)
    assert any("/ray/" in k and "session_" in k for k in texts), "no Ray session files under RAY_TMPDIR"
    assert any("spark-events" in k for k in texts), "no Spark event log"
    assert any(k.endswith("bench.stdout") for k in texts) and any("delta" in k or "_delta_log" in k for k in texts)
    leaks = [k for k, v in texts.items() if KEY.encode() in v]
    assert not leaks, leaks
    from trialpanorama import lake

    for root in (base / "lake", base / "spark-lake"):
        for name, uri in lake.list_tables(spark, str(root)):
            df = spark.read.format("delta").load(uri)
            from pyspark.sql import functions as F

            text = F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns]))
            assert df.where(F.instr(text, KEY) > 0).count() == 0, name


def test_key_in_the_environment_only(runs):
    """The bench config refuses a key written into it: only the name of an env var is accepted."""
    from trialpanorama.bench.config import ConfigError, load_bench
    from trialpanorama.config import load_config

    cfg = load_config(ROOT / "conf" / "bench" / "tiny-cpu.yaml",
                      ["models.tiny-untrained=null", "models.tiny-finetuned=null"])
    data = dict(cfg.data)
    data["models"] = {"x": {"backend": "openai", "openai": {"base_url": "http://127.0.0.1:1/v1", "model": "m",
                                                            "api_key": KEY}}}
    with pytest.raises(ConfigError):
        load_bench(type(cfg)(data, cfg.source, cfg.overrides))


def test_secret_spark_conf_override_is_not_logged(mlflow_server, tmp_path):
    import mlflow

    sets = [x for item in TEST_OVERRIDES for x in ("--set", item)]
    out = subprocess.run([sys.executable, str(ROOT / "jobs" / "ingest_ctgov.py"), "--input",
                          str(FIXTURES / "ctgov" / "single"), "--lake", str(tmp_path / "lake"), *sets,
                          "--set", f"spark.conf.spark.hadoop.fs.s3a.secret.key={KEY}"],
                         capture_output=True, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server},
                         timeout=1500)
    assert out.returncode == 0, out.stderr[-2000:]
    run_id = __import__("json").loads(out.stdout.strip().splitlines()[-1])["mlflow_run_id"]
    run = mlflow.MlflowClient(mlflow_server).get_run(run_id)
    assert KEY not in repr(run.data.params) and KEY not in out.stderr


# ------------------------------------------------------------------------------------------ loopback
def test_services_bind_loopback(runs, mlflow_server, tmp_path):
    assert runs["serve_ips"] and runs["serve_ips"] <= LOOPBACK, runs["serve_ips"]
    conftest_ips = listening_ips(int(mlflow_server.rsplit(":", 1)[1]))
    assert conftest_ips and conftest_ips <= LOOPBACK, conftest_ips
    port = free_port()
    cmd = make_recipe("mlflow", MLFLOW_PORT=str(port))
    assert "--host 127.0.0.1" in cmd
    log = tmp_path / "make-mlflow.log"
    proc = subprocess.Popen(["bash", "-c", f"exec env {cmd}"], cwd=tmp_path, stdout=open(log, "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log, auth_counts_as_up=True)
        ips = listening_ips(port)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    assert ips and ips <= LOOPBACK, ips
    refused = subprocess.run([sys.executable, str(ROOT / "ray_apps" / "serve.py"), "--model", "x=y",
                              "--host", "0.0.0.0"], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "loopback" in refused.stderr


# ------------------------------------------------------------------------------------------ MLflow auth
def test_mlflow_basic_auth_refuses_anonymous_clients(tmp_path):
    """`make mlflow-auth` as written in the Makefile: anonymous requests get 401, the admin can log a run."""
    port = free_port()
    password = "pw-" + os.urandom(8).hex()
    cmd = make_recipe("mlflow-auth", MLFLOW_PORT=str(port))
    assert "--app-name basic-auth" in cmd and "--host 127.0.0.1" in cmd
    log = tmp_path / "auth.log"
    env = {**os.environ, "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(["bash", "-c", f"exec env {cmd}"], cwd=tmp_path, env=env, stdout=open(log, "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", proc, log, auth_counts_as_up=True)
        assert listening_ips(port) <= LOOPBACK
        api = f"{uri}/api/2.0/mlflow/experiments/search?max_results=5"
        with pytest.raises(urllib.error.HTTPError) as anon:
            urllib.request.urlopen(api, timeout=10)
        assert anon.value.code == 401
        bad = urllib.request.Request(api, headers={"Authorization": "Basic " + b64encode(b"admin:wrong").decode()})
        with pytest.raises(urllib.error.HTTPError) as wrong:
            urllib.request.urlopen(bad, timeout=10)
        assert wrong.value.code == 401
        script = ("import mlflow; mlflow.set_experiment('auth-test');"
                  "r = mlflow.start_run(); mlflow.log_param('p', 1); mlflow.end_run(); print(r.info.run_id)")
        ok = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**env, "MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_USERNAME": "admin",
                                 "MLFLOW_TRACKING_PASSWORD": password})
        assert ok.returncode == 0, ok.stderr[-2000:]
        anon_client = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                                     env={**{k: v for k, v in env.items() if not k.startswith("MLFLOW_TRACKING_")},
                                          "MLFLOW_TRACKING_URI": uri})
        assert anon_client.returncode != 0 and "401" in (anon_client.stderr + anon_client.stdout)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    assert (tmp_path / "basic_auth.db").is_file() and password not in log.read_text()


def test_makefile_recipes_parse():
    """The recipe is ``VAR=value ... <venv>/bin/mlflow server ...``: what the two server tests above start."""
    for target in ("mlflow", "mlflow-auth"):
        words = shlex.split(make_recipe(target))
        binary = next(i for i, w in enumerate(words) if "=" not in w)
        assert words[binary].endswith("/.venv/bin/mlflow") and words[binary + 1] == "server", words
        assert all(w.split("=", 1)[0].isupper() for w in words[:binary])  # only environment assignments before it


def test_override_redaction_rules():
    from trialpanorama.tracking import redact_override

    assert redact_override("spark.conf.spark.hadoop.fs.s3a.secret.key=abc") == "spark.conf.spark.hadoop.fs.s3a.secret.key=***"
    assert redact_override("models.x.api_key=sk-1") == "models.x.api_key=***"
    assert redact_override("lake.root=s3a://AKIA:pw@bucket/lake") == "lake.root=s3a://bucket/lake"
    assert redact_override("spark.master=local[2]") == "spark.master=local[2]"  # ordinary keys stay readable
