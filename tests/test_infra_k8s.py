"""infra/k8s: every manifest against the operators' real CRD schemas and Kubernetes' own, plus the wiring
between them (one image, one volume, Secrets by reference, generated files current). Offline: the schemas
are committed (scripts/fetch_crd_schemas.py)."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from trialpanorama.lake import DELTA_CONF

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "infra" / "k8s"
PIPELINE = ["ingest_ctgov", "ingest_ictrp", "ingest_pubmed", "import_panorama", "unify_trials", "build_relations",
            "load_vocabularies", "link_ontologies", "build_search_index", "build_tasks", "check_leakage",
            "export_tasks"]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


validate_k8s = _script("validate_k8s")
render_k8s = _script("render_k8s")


@pytest.fixture(scope="module")
def validators():
    return validate_k8s.load_validators()


def _docs(rel: str) -> list[dict]:
    return list(validate_k8s.documents(K8S / rel))


def _one(rel: str) -> dict:
    (doc,) = _docs(rel)
    return doc


def _all_docs() -> list[tuple[Path, dict]]:
    return [(p, d) for p in validate_k8s.manifest_files() for d in validate_k8s.documents(p)]


@pytest.mark.parametrize("path", validate_k8s.manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_matches_its_schema(path, validators):
    docs = list(validate_k8s.documents(path))
    assert docs, f"{path} holds no object"
    for doc in docs:
        assert validate_k8s.validate_document(doc, validators) == [], f"{path}: {doc.get('kind')}"


def test_schemas_are_the_upstream_ones_with_their_source():
    sources = json.loads((K8S / "schemas" / "SOURCES.json").read_text())
    crds = {(s["apiVersion"], s["kind"]): s for s in sources if "kind" in s}
    assert crds[("ray.io/v1", "RayCluster")]["source"] == "go module github.com/ray-project/kuberay/ray-operator@v1.5.0"
    assert crds[("ray.io/v1", "RayJob")]["path"] == "config/crd/bases/ray.io_rayjobs.yaml"
    assert crds[("sparkoperator.k8s.io/v1beta2", "SparkApplication")]["source"].startswith(
        "go module github.com/kubeflow/spark-operator/v2@v")
    for source in crds.values():
        schema = json.loads((K8S / "schemas" / source["file"]).read_text())
        assert "spec" in schema["properties"] and re.fullmatch(r"[0-9a-f]{64}", source["archive_sha256"])
    # Fields this project relies on exist in the schema as committed (an older CRD would lack them).
    rayjob = json.loads((K8S / "schemas" / "ray.io_v1_RayJob.json").read_text())["properties"]["spec"]["properties"]
    for field in ("entrypoint", "runtimeEnvYAML", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished",
                  "submitterPodTemplate", "rayClusterSpec"):
        assert field in rayjob


BREAKAGES = [
    # (file, mutation, text the error must contain)
    ("ray/rayjob-finetune.yaml", lambda d: d["spec"].__setitem__("shutdownAfterJobFinished", True),
     "shutdownAfterJobFinished"),
    ("ray/raycluster.yaml", lambda d: d["spec"]["workerGroupSpecs"][0].__setitem__("maxReplicas", "4"),
     "maxReplicas"),
    ("ray/raycluster.yaml", lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"), "groupName"),
    ("ray/raycluster.yaml",
     lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].__setitem__("envv", []), "envv"),
    ("spark/ingest-ctgov.yaml", lambda d: d["spec"].__setitem__("type", "Pyhton"), "Pyhton"),
    ("spark/ingest-ctgov.yaml", lambda d: d["spec"]["executor"].__setitem__("instances", "4"), "instances"),
    ("spark/ingest-ctgov.yaml", lambda d: d["spec"].pop("sparkVersion"), "sparkVersion"),
    ("mlflow/service.yaml", lambda d: d["spec"]["ports"][0].__setitem__("port", "5000"), "port"),
    ("mlflow/deployment.yaml",
     lambda d: d["spec"]["template"]["spec"]["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"].__setitem__(
         "nam", "x"), "nam"),
    ("storage/shared-pvc.yaml", lambda d: d["spec"].__setitem__("accessModes", "ReadWriteMany"), "accessModes"),
    ("namespace.yaml", lambda d: d.__setitem__("apiVersion", "v2"), "no schema"),
]


@pytest.mark.parametrize("rel,mutate,needle", BREAKAGES, ids=[f"{b[0]}:{b[2]}" for b in BREAKAGES])
def test_validator_refuses_a_broken_manifest(rel, mutate, needle, validators):
    doc = copy.deepcopy(_docs(rel)[0])
    assert validate_k8s.validate_document(doc, validators) == []
    mutate(doc)
    problems = validate_k8s.validate_document(doc, validators)
    assert problems and any(needle in p for p in problems), problems


def test_generated_manifests_are_current():
    assert render_k8s.main(["--check"]) == 0, "run scripts/render_k8s.py"


def test_kustomizations_list_every_manifest_once():
    listed: dict[Path, Path] = {}
    for kust in K8S.rglob("kustomization.yaml"):
        data = yaml.safe_load(kust.read_text())
        assert data["namespace"] == "trialpanorama"
        for res in data["resources"]:
            path = (kust.parent / res).resolve()
            assert path.is_file(), f"{kust}: {res} missing"
            assert path not in listed, f"{res} listed twice"
            listed[path] = kust
    unlisted = [p for p in validate_k8s.manifest_files() if p.resolve() not in listed]
    # RayJobs bring up their own cluster and are applied one at a time (docs/deploy.md).
    assert sorted(p.name for p in unlisted) == ["rayjob-benchmark.yaml", "rayjob-finetune.yaml"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) not installed")
@pytest.mark.parametrize("folder", ["", "spark"])
def test_kustomize_builds(folder):
    out = subprocess.run(["kubectl", "kustomize", str(K8S / folder)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    kust = yaml.safe_load((K8S / folder / "kustomization.yaml").read_text())
    expected = sum(len(_docs(str(Path(folder) / r))) for r in kust["resources"])
    assert len(built) == expected
    assert all(d["metadata"].get("namespace") == "trialpanorama" for d in built if d["kind"] != "Namespace")


def test_one_spark_application_per_pipeline_stage_in_order():
    order = yaml.safe_load((K8S / "spark" / "kustomization.yaml").read_text())["resources"]
    assert order == [f"{s.replace('_', '-')}.yaml" for s in PIPELINE]
    defaults = render_k8s.read_spark_defaults()
    for stage in PIPELINE:
        app = _one(f"spark/{stage.replace('_', '-')}.yaml")["spec"]
        job = app["mainApplicationFile"].removeprefix("local:///opt/trialpanorama/")
        assert job == f"jobs/{stage}.py" and (ROOT / job).is_file()
        assert app["sparkVersion"] == version("pyspark")
        assert {k: app["sparkConf"][k] for k in DELTA_CONF} == DELTA_CONF
        assert "spark.jars.packages" not in app["sparkConf"]  # the image carries the jars
        assert app["sparkConf"]["spark.sql.session.timeZone"] == defaults["spark.sql.session.timeZone"]
        # Every flag passed is one the job (or the shared job conventions) defines.
        source = (ROOT / job).read_text() + (ROOT / "src/trialpanorama/jobrun.py").read_text()
        for flag in (a for a in app["arguments"] if a.startswith("--")):
            assert f'"{flag}"' in source, f"{stage}: {flag}"
        assert app["driver"]["serviceAccount"] == "spark"
        assert app["volumes"][0]["persistentVolumeClaim"]["claimName"] == "trialpanorama-shared"


def test_ray_jobs_bring_up_the_shared_cluster_and_clean_up():
    cluster = _one("ray/raycluster.yaml")
    assert cluster["spec"]["rayVersion"] == version("ray")
    (gpu,) = cluster["spec"]["workerGroupSpecs"]
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    gpus = int(gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    recipe = yaml.safe_load((ROOT / "conf/train/qwen3-8b-full-fsdp.yaml").read_text())["resources"]
    assert gpus == recipe["workers_per_node"] and gpu["replicas"] >= recipe["num_nodes"]
    for name, app in (("finetune", "ray_apps/finetune.py"), ("benchmark", "ray_apps/benchmark.py")):
        spec = _one(f"ray/rayjob-{name}.yaml")["spec"]
        assert spec["rayClusterSpec"] == cluster["spec"]
        assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
        assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"
        assert isinstance(yaml.safe_load(spec["runtimeEnvYAML"]), dict)
        assert app in spec["entrypoint"]
        for conf in re.findall(r"--config (\S+)", spec["entrypoint"]):
            assert (ROOT / conf).is_file()
    assert "conf/train/qwen3-8b-full-fsdp.yaml" in _one("ray/rayjob-finetune.yaml")["spec"]["entrypoint"]


def _containers(doc: dict) -> list[dict]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("containers", "initContainers"):
                if isinstance(node.get(key), list):
                    found.extend(node[key])
            if doc["kind"] == "SparkApplication" and "env" in node and "cores" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found


SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|USERNAME")


def test_credentials_only_by_secret_reference():
    docs = _all_docs()
    assert not [d for _, d in docs if d["kind"] == "Secret"], "no Secret objects with data in the repo"
    referenced = set()
    for path, doc in docs:
        for container in _containers(doc):
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
                if SECRETISH.search(env["name"]):
                    assert ref, f"{path}: {env['name']} must come from a Secret"
                    assert "value" not in env
    for _, doc in docs:
        if doc["kind"] == "ConfigMap":
            assert not [k for k in doc["data"] if SECRETISH.search(k)]
    # Every Secret a manifest names is one the deploy guide tells how to create.
    guide = (ROOT / "docs" / "deploy.md").read_text()
    assert referenced >= {"mlflow-postgres", "mlflow-admin", "mlflow-s3", "mlflow-client"}
    for name in referenced:
        assert f"kubectl -n trialpanorama create secret generic {name}" in guide, name


def test_mlflow_server_has_auth_postgres_and_s3():
    deploy = _one("mlflow/deployment.yaml")
    (server,) = deploy["spec"]["template"]["spec"]["containers"]
    args = server["args"]
    assert args[:2] == ["mlflow", "server"] and args[args.index("--app-name") + 1] == "basic-auth"
    env = {e["name"]: e for e in server["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("postgresql://$(PGUSER):$(PGPASSWORD)@")
    config = _docs("mlflow/config.yaml")[0]["data"]
    assert args[args.index("--artifacts-destination") + 1] == "$(MLFLOW_ARTIFACTS_DESTINATION)"
    assert config["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://") and "MLFLOW_S3_ENDPOINT_URL" in config
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"  # unauthenticated under basic-auth
    service = _one("mlflow/service.yaml")
    assert service["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
    # The recipe's tracking URI is this Service.
    recipe = yaml.safe_load((ROOT / "conf/train/qwen3-8b-full-fsdp.yaml").read_text())
    assert recipe["mlflow"]["tracking_uri"] == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    postgres = [d for d in _docs("mlflow/postgres.yaml") if d["kind"] == "Service"][0]
    assert env["MLFLOW_DB_HOST"]["value"] == postgres["metadata"]["name"]


def test_every_workload_mounts_the_shared_volume_and_runs_the_one_image():
    pvc = _one("storage/shared-pvc.yaml")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    recipe = yaml.safe_load((ROOT / "conf/train/qwen3-8b-full-fsdp.yaml").read_text())
    assert recipe["checkpoint"]["storage_path"].startswith("/shared/")
    images = set()
    for path, doc in _all_docs():
        for container in _containers(doc):
            if "image" in container:
                images.add(container["image"])
        if doc["kind"] in ("RayCluster", "RayJob", "SparkApplication"):
            text = json.dumps(doc)
            assert '"claimName": "trialpanorama-shared"' in text and '"mountPath": "/shared"' in text, path
    assert images == {"trialpanorama:0.1.0", "postgres:17-bookworm"}
