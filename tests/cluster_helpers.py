"""Real multi-process services on 127.0.0.1 for the cluster tests: start them, wait for them, stop them.

Every service runs in its own process group (``start_new_session``) so that stopping it signals exactly
the processes this test started (Spark's JVM children, Ray's raylet/GCS/workers, PostgreSQL's backends)
and never another cluster on the shared machine: no ``ray stop``, no ``pkill``. Ports are free ones
picked together, so two test sessions side by side never collide on Spark's or Ray's defaults.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BIN = Path(PY).parent


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports; the sockets are held together so the OS cannot hand one out twice."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Service:
    """One started process group and the file its output goes to."""

    name: str
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the whole group (children included), SIGKILL what is left after ``timeout``."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; children that outlive it still belong to the group
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(1)


def start_service(name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None,
                  cwd: Path | None = None, **popen: Any) -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([str(a) for a in argv], stdout=fh, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd, start_new_session=True, **popen)
    return Service(name, proc, log)


def run_in_group(argv: Sequence[str], timeout: float, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a new process group, killed as a group on timeout.

    ``spark-submit`` starts the Python driver as a child of its JVM; killing only the JVM on a timeout
    would leave that driver (and its gateway) running on the shared machine.
    """
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{argv[0]} timed out after {timeout}s\n{out[-2000:]}\n{err[-4000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_until(check: Callable[[], Any], what: str, services: Sequence[Service] = (),
               timeout: float = 240, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail early, with the logs, if a service died.

    Timeouts are generous: the machine is a shared 2-core box where a JVM or a raylet can take a minute.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        dead = [s for s in services if not s.alive()]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {s.name} (rc={s.proc.poll()}):\n{s.tail()}" for s in services)
            raise AssertionError(f"{what}: {'exited' if dead else 'timed out'}\n{logs}")
        time.sleep(every)


def http_json(url: str, timeout: float = 5) -> Any | None:
    """The decoded JSON at ``url``, or None while the server is not answering (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except (OSError, ValueError):
        return None


def http_up(url: str, timeout: float = 2) -> bool:
    """True once anything answers HTTP at ``url`` (an error status counts: the server is up)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def java17_home() -> str:
    """The Java 17 home Spark must run on, found by the same script the Makefile uses."""
    out = subprocess.run([str(ROOT / "scripts" / "find_java17.sh")], capture_output=True, text=True, check=True)
    home = out.stdout.strip()
    assert 'JAVA_VERSION="17' in (Path(home) / "release").read_text(), home
    return home


# ------------------------------------------------------------------------------------ packaging
def pyfiles_zip(dest_dir: Path) -> Path:
    """The archive ``spark-submit --py-files`` takes, built from src/ the way ``make dist`` does (never a
    stale dist/): ``trialpanorama/...`` at the top level of the zip, bytecode caches left out."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / "trialpanorama.zip"
    src = ROOT / "src"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((src / "trialpanorama").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(src).as_posix())
    return out


def python_without_project(dest_dir: Path) -> Path:
    """An interpreter that sees the project's installed dependencies but not the project itself.

    The venv's ``site-packages`` is added with a .pth line; .pth files inside it (among them the editable
    install's) are not processed from there, so ``import trialpanorama`` only works through what a job
    ships (``--py-files``). A Spark driver and executors run on it prove the packaged code is complete.
    """
    import sysconfig

    if (dest_dir / "bin" / "python").exists():
        return dest_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest_dir)], check=True)
    purelib = Path(sysconfig.get_paths()["purelib"])
    site = next((dest_dir / "lib").glob("python*/site-packages"))
    (site / "project-deps.pth").write_text(f"{purelib}\n")
    py = dest_dir / "bin" / "python"
    probe = subprocess.run([str(py), "-c", "import pyspark, delta, mlflow, yaml\n"
                            "try:\n import trialpanorama\nexcept ImportError:\n print('isolated')"],
                           capture_output=True, text=True, cwd=dest_dir)
    assert probe.stdout.strip() == "isolated", probe.stdout + probe.stderr
    return py


# ------------------------------------------------------------------------------------------- Ray
def ray_env() -> dict[str, str]:
    """Environment for a throwaway Ray cluster on 127.0.0.1: token auth off, no usage stats, the venv's
    ``python`` first on PATH (so an entrypoint written ``python ...`` runs the project's interpreter)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
           # a test cluster has nothing to drain on SIGTERM; the default waits 30 s per node
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    return env


def node_ports() -> list[str]:
    """`ray start` flags giving every port a node opens a free one (Ray's defaults collide between clusters)."""
    node, obj, agent, agent_grpc, metrics, runtime_env = free_ports(6)
    # worker ports 0/0: each worker binds an OS-assigned port, so two raylets on one host cannot collide
    return ["--node-manager-port", str(node), "--object-manager-port", str(obj),
            "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
            "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env),
            "--min-worker-port", "0", "--max-worker-port", "0"]


@dataclass
class RayCluster:
    """A Ray head and worker nodes started with ``ray start --block``, each in its own process group and
    temp dir (short, under /tmp: Ray's unix socket paths are length-limited)."""

    log_dir: Path
    gcs_port: int = 0
    dashboard_port: int = 0
    nodes: list[Service] = field(default_factory=list)
    temps: list[str] = field(default_factory=list)

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, args: list[str], num_cpus: int) -> Service:
        temp = tempfile.mkdtemp(prefix="tpr", dir="/tmp")
        self.temps.append(temp)
        argv = [BIN / "ray", "start", *args, "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus),
                "--num-gpus", "0", "--object-store-memory", str(200 * 2**20), "--temp-dir", temp,
                "--disable-usage-stats", "--block", *node_ports()]
        svc = start_service(name, argv, self.log_dir, env=ray_env())
        self.nodes.append(svc)
        return svc

    def start_head(self, num_cpus: int = 1) -> Service:
        self.gcs_port, self.dashboard_port, client = free_ports(3)
        head = self._start("ray-head", ["--head", "--port", str(self.gcs_port), "--include-dashboard", "true",
                                        "--dashboard-host", "127.0.0.1", "--dashboard-port",
                                        str(self.dashboard_port), "--ray-client-server-port", str(client)],
                           num_cpus)
        wait_until(lambda: http_up(f"{self.dashboard}/api/version"), "ray dashboard", [head])
        return head

    def add_node(self, num_cpus: int = 1) -> Service:
        return self._start(f"ray-node{len(self.nodes)}", ["--address", self.gcs_address], num_cpus)

    def alive_nodes(self) -> list[dict[str, Any]]:
        """Alive nodes as the State API lists them (the same call as ``ray list nodes``)."""
        from ray.util.state import list_nodes

        try:
            nodes = list_nodes(address=self.dashboard, filters=[("state", "=", "ALIVE")], timeout=10,
                               raise_on_missing_output=False)
        except Exception:  # noqa: BLE001 - the dashboard's state API is not up yet
            return []
        return [n if isinstance(n, dict) else n.__dict__ for n in nodes]

    def stop(self) -> None:
        for svc in self.nodes:  # all nodes at once: they shut down in parallel
            with contextlib.suppress(ProcessLookupError):
                os.killpg(svc.proc.pid, signal.SIGTERM)
        for svc in reversed(self.nodes):
            svc.stop()
        for temp in self.temps:
            shutil.rmtree(temp, ignore_errors=True)


# ---------------------------------------------------------------------------------------- MLflow
def start_mlflow(backend_uri: str, home: Path) -> tuple[Service, str]:
    """``mlflow server`` on a free port of 127.0.0.1 over ``backend_uri``; returns it and its URL."""
    (port,) = free_ports(1)
    svc = start_service("mlflow", [BIN / "mlflow", "server", "--backend-store-uri", backend_uri,
                                   "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1",
                                   "--port", str(port), "--workers", "1"], home)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_until(healthy, "mlflow server", [svc], timeout=300)
    return svc, url


# -------------------------------------------------------------------------------------- PostgreSQL
@dataclass
class Postgres:
    """A throwaway PostgreSQL server (Debian's package) on 127.0.0.1, data in a temp dir.

    PostgreSQL refuses to run as root; under root (CI containers) it runs as the ``postgres`` user, or
    ``nobody`` where the package's user does not exist, in a temp dir that user owns.
    """

    bin_dir: Path
    data: Path
    port: int
    service: Service | None = None
    run_as: str | None = None

    @classmethod
    def install(cls) -> Path:
        out = subprocess.run([str(ROOT / "scripts" / "install_postgres.sh")], capture_output=True, text=True,
                             timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        return Path(out.stdout.strip().splitlines()[-1])

    @classmethod
    def create(cls, bin_dir: Path) -> Postgres:
        run_as = None
        if os.geteuid() == 0:
            import pwd

            try:
                run_as = pwd.getpwnam("postgres").pw_name
            except KeyError:
                run_as = "nobody"
        base = Path(tempfile.mkdtemp(prefix="tppg", dir="/tmp"))
        base.chmod(0o755)
        data = base / "data"
        data.mkdir(mode=0o700)
        if run_as:
            shutil.chown(data, run_as)
        (port,) = free_ports(1)
        pg = cls(bin_dir, data, port, run_as=run_as)
        pg._run(["initdb", "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8", "--no-locale"])
        return pg

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        root = self.bin_dir.parents[4]  # <root>/usr/lib/postgresql/<major>/bin
        libs = [str(p) for p in (root / "usr" / "lib").glob("*-linux-gnu") if root != Path("/")]
        if libs:  # the unpacked package's own libraries (scripts/install_postgres.sh, no root)
            env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
        return env

    def _user(self) -> dict[str, Any]:
        return {"user": self.run_as} if self.run_as else {}

    def _run(self, argv: list[str]) -> None:
        out = subprocess.run([str(self.bin_dir / argv[0]), *argv[1:]], capture_output=True, text=True,
                             env=self._env(), cwd=self.data.parent, timeout=300, **self._user())
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]

    def start(self) -> None:
        # TCP on 127.0.0.1 only, the unix socket inside the data dir (not /var/run/postgresql), no JIT
        # (the unpacked package comes without libllvm), little memory: a test server on a shared box.
        self.service = start_service(
            "postgres", [self.bin_dir / "postgres", "-D", self.data, "-p", self.port, "-c", "listen_addresses=127.0.0.1",
                         "-c", f"unix_socket_directories={self.data}", "-c", "jit=off",
                         "-c", "shared_buffers=32MB", "-c", "max_connections=50", "-c", "fsync=off"],
            self.data.parent, env=self._env(), cwd=self.data.parent, **self._user())
        wait_until(self.accepts, "postgres", [self.service], timeout=120)

    def connect(self, dbname: str = "postgres", autocommit: bool = False) -> Any:
        # psycopg 3: the driver SQLAlchemy >= 2.1 (under MLflow) picks for a plain postgresql:// URI
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="mlflow", dbname=dbname, connect_timeout=3,
                               autocommit=autocommit)

    def accepts(self) -> bool:
        try:
            self.connect().close()
            return True
        except Exception:  # noqa: BLE001 - psycopg.OperationalError while it starts
            return False

    def create_database(self, name: str) -> str:
        with self.connect(autocommit=True) as conn:  # CREATE DATABASE cannot run inside a transaction
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://mlflow@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.service:
            # SIGTERM = PostgreSQL's "smart" shutdown would wait for clients; SIGINT is "fast" shutdown.
            try:
                os.kill(self.service.proc.pid, signal.SIGINT)
                self.service.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            self.service.stop()
        shutil.rmtree(self.data.parent, ignore_errors=True)
