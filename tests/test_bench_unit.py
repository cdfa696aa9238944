"""Benchmark pieces that need no Ray cluster: config validation, vLLM config, scoring stage, predictions
table (real Delta via delta-rs), the openai backend's retries against a real local HTTP server, leaderboard.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from tests.conftest import ROOT
from trialpanorama.bench import report, store, synthetic
from trialpanorama.bench.config import ConfigError, load_bench, model_spec
from trialpanorama.bench.lm import OpenAIBackend, RateLimiter, vllm_config, vllm_processor
from trialpanorama.bench.runner import PRIMARY, score_batch
from trialpanorama.config import load_config
from trialpanorama.tasks.registry import TASKS


def test_bench_configs_load_and_validate():
    for name in ("tiny-cpu", "openai-endpoint", "vllm-8b"):
        spec = load_bench(load_config(ROOT / "conf" / "bench" / f"{name}.yaml"))
        assert spec.tasks == TASKS and spec.models
    spec = load_bench(load_config(ROOT / "conf" / "bench" / "tiny-cpu.yaml",
                                  ["models.tiny-untrained.path=/x", "models.tiny-finetuned=null", "run_id=r1",
                                   "tasks=arm_design,study_search", "task_versions.arm_design=3"]))
    assert [m.path for m in spec.models] == ["/x"] and spec.run_id == "r1"
    assert spec.tasks == ("arm_design", "study_search") and spec.task_versions == {"arm_design": 3, "study_search": None}
    assert load_bench(load_config(ROOT / "conf" / "bench" / "tiny-cpu.yaml")).models[1].from_registry


@pytest.mark.parametrize("raw,msg", [
    ({"name": "m", "backend": "tgi"}, "backend"),
    ({"name": "m", "backend": "hf"}, "needs path"),
    ({"name": "bad name", "backend": "hf", "path": "x"}, "name"),
    ({"name": "m", "backend": "openai", "openai": {"api_key": "sk-123"}}, "secrets never"),
    ({"name": "m", "backend": "openai", "openai": {"api_key_env": "sk-123"}}, "env var NAME"),
    ({"name": "m", "backend": "vllm", "path": "x", "vllm": {"tensor_parallel_size": 3}}, "power of two"),
    ({"name": "m", "backend": "hf", "path": "x", "hf": {"batchsize": 3}}, "unknown keys"),
])
def test_model_spec_rejects(raw, msg):
    with pytest.raises(ConfigError, match=msg):
        model_spec(raw, 0)


def test_vllm_processor_config_builds_without_running(tmp_path):
    """The vLLM path: engine kwargs (TP, prefix caching) reach ray.data.llm; building needs no vllm or GPU."""
    spec = load_bench(load_config(ROOT / "conf" / "bench" / "vllm-8b.yaml"))
    ft = spec.models[1]
    cfg = vllm_config("/models/x", ft.options, 1024)
    assert cfg.engine_kwargs["tensor_parallel_size"] == 2 and cfg.engine_kwargs["enable_prefix_caching"] is True
    assert cfg.batch_size == 64 and cfg.should_continue_on_error
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    proc = vllm_processor(str(folder), ft.options, {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0})
    assert type(proc).__name__ == "Processor"


def _batch(task_rows: dict, answers: bool) -> pd.DataFrame:
    rows = [r for rs in task_rows.values() for r in rs]
    return pd.DataFrame({"sample_id": [r["sample_id"] for r in rows], "task": [r["task"] for r in rows],
                         "reference": [r["reference"] for r in rows],
                         "raw_output": [r["answer"] if answers else "I am not sure." for r in rows],
                         "messages_json": ["[]"] * len(rows)})


def test_score_batch_reference_answers_score_one_garbage_is_unparseable(tmp_path):
    rows = synthetic.task_rows(2, 0)
    index = synthetic.build_search_index(tmp_path / "lake")
    good = score_batch(_batch(rows, True), str(index))
    non_search = good[good["task"] != "study_search"]
    assert non_search["score"].tolist() == [1.0] * len(non_search) and non_search["correct"].all()
    assert not good["unparseable"].any() and "messages_json" not in good.columns
    bad = score_batch(_batch(rows, False), str(index))
    assert bad["unparseable"].all() and (bad["score"] == 0.0).all()
    assert json.loads(bad["parsed"].iloc[0]) in ("unparseable", {"outcome": "unparseable", "reason": "unparseable",
                                                                  "rationale": "I am not sure."})
    assert set(PRIMARY) == set(TASKS)


def _pred(i: int, error: str | None = None) -> dict:
    return {"run_id": "r", "model": "m", "task": "arm_design", "sample_id": f"s{i}", "task_version": "1",
            "dataset_version": 0, "backend": "hf", "model_source": "x", "raw_output": "o", "parsed": '"A"',
            "reference": "{}", "score": 1.0, "correct": True, "unparseable": False, "error": error,
            "tokens_in": 3, "tokens_out": 2, "latency_s": 0.1, "created_at": pd.Timestamp.now(tz="UTC")}


def test_predictions_merge_is_idempotent_and_retries_error_rows(tmp_path):
    lake = str(tmp_path / "lake")
    store.write(lake, pa.Table.from_pylist([_pred(0), _pred(1, error="HTTP 503")]))
    assert store.done_ids(lake, "r", "m", "arm_design") == {"s0"}
    store.write(lake, pa.Table.from_pylist([_pred(0), _pred(1), _pred(2)]))  # s0 again: no duplicate
    t = store.read(lake, "r", "m", "arm_design")
    assert sorted(t.column("sample_id").to_pylist()) == ["s0", "s1", "s2"]
    assert t.column("error").to_pylist() == [None, None, None]
    assert store.done_ids(lake, "r", "m", "arm_design") == {"s0", "s1", "s2"}
    assert store.read(lake, "other").num_rows == 0


class _Flaky(BaseHTTPRequestHandler):
    calls: list[float] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        _Flaky.calls.append(time.monotonic())
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Authorization") != "Bearer k-test":
            self.send_response(401)
            self.end_headers()
            return
        if len(_Flaky.calls) % 2 == 1:  # every first attempt is rate limited
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        body = json.dumps({"choices": [{"message": {"content": '{"answer_choice": "A"}'}}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 4}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_openai_backend_retries_429_and_reads_key_from_env(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("TP_UNIT_KEY", "k-test")
        lm = OpenAIBackend(f"http://127.0.0.1:{server.server_port}/v1", "m", api_key_env="TP_UNIT_KEY",
                           max_concurrency=1, max_retries=2, backoff_s=0.01, timeout_s=5)
        gens = lm.generate([[{"role": "user", "content": "q"}]] * 2, 8)
        assert [g.text for g in gens] == ['{"answer_choice": "A"}'] * 2 and gens[0].tokens_out == 4
        assert lm.stats["retries"] == 2 and lm.stats["failures"] == 0
        monkeypatch.delenv("TP_UNIT_KEY")
        with pytest.raises(RuntimeError, match="TP_UNIT_KEY"):
            OpenAIBackend("http://127.0.0.1:1/v1", "m", api_key_env="TP_UNIT_KEY")
        dead = OpenAIBackend("http://127.0.0.1:1/v1", "m", max_retries=1, backoff_s=0.01, timeout_s=1)
        assert dead.generate([[{"role": "user", "content": "q"}]], 4)[0].error == "ConnectionError"
    finally:
        server.shutdown()


def test_rate_limiter_spaces_requests():
    rl = RateLimiter(per_minute=1200)  # one per 50 ms
    t0 = time.monotonic()
    for _ in range(5):
        rl.wait()
    assert time.monotonic() - t0 >= 0.19


def test_published_numbers_match_the_paper_and_leaderboard_renders(tmp_path):
    pub = report.load_published()
    assert set(pub) == {"Llama-8B", "Llama-70B", "GPT-4o-mini", "GPT-4o", "o3-mini"}
    assert pub["Llama-8B"]["study_search"]["recall@100"] == 11.6
    assert pub["o3-mini"]["endpoint_design"]["macro_f1"] == 60.7
    assert pub["GPT-4o"]["sample_size_estimation"]["mae"] == 512.6
    paper = (ROOT.parent / "shared" / "research" / "paper.md")
    if paper.is_file():
        assert "| GPT-4o-mini | 78.4 | 78.7 | 55.8 | 55.8 | 62.2 | 62.2 | 22.8 | 411.4 | 51.3 | 16.8 |" in paper.read_text()
    results = {"tiny": {"arm_design": {"accuracy": 0.25, "macro_f1": 0.2}, "sample_size_estimation": {"mae": 12.0}}}
    base = {"arm_design": {"majority": {"accuracy": 0.3}}}
    paths = report.write_leaderboard(results, tmp_path, "t", baselines=base)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "| tiny | this run |" in md and "25.0" in md and "12.0" in md and "| baseline: majority |" in md
    assert "| Llama-70B | published zero-shot | 25.1 | 33.3 |" in md
    assert (tmp_path / "leaderboard.png").read_bytes()[:4] == b"\x89PNG" and paths["json"].endswith(".json")
    assert yaml.safe_load((ROOT / "conf" / "published_results.yaml").read_text())["scale"] == "percent"


def test_a_pool_holding_every_cpu_is_refused_not_left_hanging():
    import ray

    from trialpanorama.bench.runner import _check_room

    if ray.is_initialized():  # another test's cluster: this one needs exactly two CPUs
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=96 * 2**20)
    try:
        with pytest.raises(ValueError, match="needs 2.5 CPUs of the cluster's 2"):
            _check_room("tiny", 5, 0.5, 1.0)
        with pytest.raises(ValueError, match="leaves no node with the 1 CPUs"):
            _check_room("tiny", 1, 1.25, 1.0)
        _check_room("tiny", 1, 1.0, 1.0)  # one whole CPU left for the read and scoring tasks
    finally:
        ray.shutdown()


def test_a_pool_spread_over_small_nodes_must_leave_one_node_room_for_a_task():
    """Two 0.5-CPU replicas on two 1-CPU nodes: spread one per node, no node keeps a whole CPU for a
    read task (the two-node cluster job hung there for 600 s); half-CPU tasks fit."""
    from trialpanorama.bench.runner import placement_problem

    assert "placed spread" in placement_problem([1.0, 1.0], 2, 0.5, 1.0)
    assert placement_problem([1.0, 1.0], 2, 0.5, 0.5) is None
    assert placement_problem([2.0], 2, 0.5, 1.0) is None                 # one node: a CPU stays free
    assert placement_problem([1.0, 4.0], 4, 1.0, 1.0) is None            # either way a 1-CPU node stays free
    assert "do not fit" in placement_problem([1.0, 1.0, 1.0], 2, 1.5, 0.5)  # 3 CPUs in all, but no node holds 1.5
    assert "needs 3 CPUs" in placement_problem([1.0, 1.0], 3, 1.0, 0.5)
    assert "placed packed" in placement_problem([1.0, 1.0], 1, 1.0, 1.5)
