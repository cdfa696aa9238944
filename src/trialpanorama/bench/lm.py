"""One LM interface, backends behind it: ``hf`` (transformers), ``openai`` (any chat-completions endpoint),
``vllm`` (``ray.data.llm``).

A backend turns a list of chat conversations into ``Generation``s (text, tokens in/out, seconds, error).
``hf`` and ``openai`` are plain classes usable in one process (the server, the plain-loop benchmark) and
are wrapped by ``Predictor``, the callable class Ray Data runs in an actor pool. ``vllm`` has no
in-process form here: ``ray.data.llm`` builds the whole engine stage, so ``vllm_processor`` returns a
processor to apply to the dataset; it is imported lazily so nothing needs vllm installed but that path.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

Messages = list[dict[str, str]]


@dataclass
class Generation:
    text: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    error: str | None = None


class LM(Protocol):
    """What every in-process backend offers (lm-evaluation-harness's ``generate_until``, for chat)."""

    name: str

    def generate(self, conversations: Sequence[Messages], max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0) -> list[Generation]: ...


# ------------------------------------------------------------------------------------------------ models
def resolve_model_path(path: str, tracking_uri: str | None = None) -> tuple[str, str | None]:
    """A local HF folder for ``path`` and the registry version when it came from ``models:/name/version``.

    MLflow's transformers flavour stores the weights under ``model/`` and the tokenizer under
    ``components/tokenizer``; a plain folder (or hub id) is returned unchanged.
    """
    if not path.startswith("models:/"):
        return path, None
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    name, _, ref = path.removeprefix("models:/").partition("/")
    client = mlflow.MlflowClient()
    if ref.isdigit():
        version = ref
    else:  # an alias (models:/name@champion) or 'latest'
        mv = (client.get_model_version_by_alias(name, ref.lstrip("@")) if ref.startswith("@") or
              ref not in ("", "latest") else max(client.search_model_versions(f"name='{name}'"),
                                                 key=lambda v: int(v.version)))
        version = str(mv.version)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}"))
    return str(hf_folder(local)), version


def hf_folder(root: Path) -> Path:
    """The folder under ``root`` holding config.json (MLflow layouts nest it), tokenizer copied beside it."""
    if (root / "config.json").is_file():
        return root
    for cand in sorted(root.rglob("config.json")):
        folder = cand.parent
        if not (folder / "tokenizer_config.json").is_file():
            tok = next((p.parent for p in root.rglob("tokenizer_config.json")), None)
            if tok is not None:
                import shutil

                for f in tok.iterdir():
                    if f.is_file() and not (folder / f.name).exists():
                        shutil.copy2(f, folder / f.name)
        return folder
    raise FileNotFoundError(f"no Hugging Face model (config.json) under {root}")


class HFBackend:
    """transformers ``generate`` over left-padded batches, sorted by length to cut padding waste.

    Why left padding: a decoder-only model continues from the last position, so every row's prompt must
    end at the same column. Why sort: rows of one micro-batch are padded to its longest prompt; grouping
    similar lengths is the cheapest way to reduce that waste (``stats`` counts it).
    """

    def __init__(self, path: str, name: str = "hf", dtype: str = "auto", device: str | None = None,
                 max_input_tokens: int = 2048, micro_batch_size: int = 8, torch_threads: int | None = None,
                 **_: Any):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        t0 = time.perf_counter()
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        self.name = name
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "left"
        self.tok.truncation_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        kwargs: dict[str, Any] = {}
        if dtype != "auto":
            kwargs["dtype"] = getattr(torch, dtype)
        elif self.device == "cuda":
            kwargs["dtype"] = torch.bfloat16
        self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs).to(self.device).eval()
        self.max_input_tokens = int(max_input_tokens)
        self.micro_batch_size = int(micro_batch_size)
        self.stats = {"load_s": time.perf_counter() - t0, "tokenize_s": 0.0, "generate_s": 0.0,
                      "prompt_tokens": 0, "padded_prompt_tokens": 0, "generated_tokens": 0,
                      "padded_generated_tokens": 0}

    def encode(self, conversations: Sequence[Messages]) -> list[list[int]]:
        t0 = time.perf_counter()
        texts = [self.tok.apply_chat_template(list(m), tokenize=False, add_generation_prompt=True)
                 for m in conversations]
        ids = self.tok(texts, add_special_tokens=False, truncation=True,
                       max_length=self.max_input_tokens)["input_ids"]
        self.stats["tokenize_s"] += time.perf_counter() - t0
        return ids

    def generate(self, conversations: Sequence[Messages], max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0) -> list[Generation]:
        import torch

        ids = self.encode(conversations)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[Generation | None] = [None] * len(ids)
        eos = self.tok.eos_token_id
        pad = self.tok.pad_token_id
        for start in range(0, len(order), self.micro_batch_size):
            chunk = order[start:start + self.micro_batch_size]
            width = max(len(ids[i]) for i in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):
                n = len(ids[i])
                input_ids[r, width - n:] = torch.tensor(ids[i])
                mask[r, width - n:] = 1
            t0 = time.perf_counter()
            gen_kwargs: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "pad_token_id": pad,
                                          "eos_token_id": eos}
            if temperature > 0:
                gen_kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
            else:
                gen_kwargs.update(do_sample=False)
            with torch.inference_mode():
                seq = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                          **gen_kwargs)
            dt = time.perf_counter() - t0
            new = seq[:, width:].cpu()
            self.stats["generate_s"] += dt
            self.stats["padded_prompt_tokens"] += width * len(chunk)
            self.stats["padded_generated_tokens"] += int(new.shape[0] * new.shape[1])
            for r, i in enumerate(chunk):
                row = new[r].tolist()
                n_out = len(row)
                for j, t in enumerate(row):
                    if t == eos or t == pad:
                        n_out = j + (1 if t == eos else 0)
                        break
                text = self.tok.decode(row[:n_out], skip_special_tokens=True)
                self.stats["prompt_tokens"] += len(ids[i])
                self.stats["generated_tokens"] += n_out
                out[i] = Generation(text, len(ids[i]), n_out, dt)
        return [g for g in out if g is not None]


# ------------------------------------------------------------------------------------------------ openai
class RateLimiter:
    """A token bucket shared by an actor's threads: at most ``per_minute`` request starts per minute."""

    def __init__(self, per_minute: float):
        self.interval = 60.0 / per_minute if per_minute and per_minute > 0 else 0.0
        self.lock = threading.Lock()
        self.next_at = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        if at > now:
            time.sleep(at - now)


class OpenAIBackend:
    """Chat completions over HTTP with a rate limit, retries with exponential backoff + jitter, timeouts.

    The API key is read from the environment variable the config names (``api_key_env``), in the process
    that sends the requests; it is held only in the session's headers and never returned, logged or
    recorded. Retries cover connection errors, timeouts, 429 and 5xx; other 4xx fail the row at once.
    """

    RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, max_concurrency: int = 4,
                 requests_per_minute: float = 600, max_retries: int = 4, backoff_s: float = 0.5,
                 timeout_s: float = 60.0, name: str | None = None, **_: Any):
        import requests

        self.name = name or model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.session = requests.Session()
        self.session.headers["Content-Type"] = "application/json"
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise RuntimeError(f"env var {api_key_env} (openai.api_key_env) is not set")
            self.session.headers["Authorization"] = f"Bearer {key}"
        self.pool = ThreadPoolExecutor(max_workers=max(1, int(max_concurrency)))
        self.limiter = RateLimiter(float(requests_per_minute))
        self.max_retries, self.backoff_s, self.timeout_s = int(max_retries), float(backoff_s), float(timeout_s)
        self.stats = {"requests": 0, "retries": 0, "failures": 0}

    def _one(self, messages: Messages, max_new_tokens: int, temperature: float, top_p: float) -> Generation:
        import requests

        payload = {"model": self.model, "messages": list(messages), "max_tokens": int(max_new_tokens),
                   "temperature": float(temperature), "top_p": float(top_p)}
        t0 = time.perf_counter()
        error = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats["retries"] += 1
                time.sleep(self.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random()))
            self.limiter.wait()
            self.stats["requests"] += 1
            try:
                resp = self.session.post(self.url, data=json.dumps(payload), timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                error = f"{type(exc).__name__}"
                continue
            if resp.status_code == 200:
                body = resp.json()
                text = body["choices"][0]["message"].get("content") or ""
                usage = body.get("usage") or {}
                return Generation(text, int(usage.get("prompt_tokens") or 0),
                                  int(usage.get("completion_tokens") or 0), time.perf_counter() - t0)
            error = f"HTTP {resp.status_code}"
            if resp.status_code not in self.RETRY_STATUS:
                break
            retry_after = resp.headers.get("Retry-After")
            if retry_after and retry_after.replace(".", "", 1).isdigit():
                time.sleep(min(float(retry_after), 60.0))
        self.stats["failures"] += 1
        return Generation("", 0, 0, time.perf_counter() - t0, error)

    def generate(self, conversations: Sequence[Messages], max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0) -> list[Generation]:
        futures = [self.pool.submit(self._one, m, max_new_tokens, temperature, top_p) for m in conversations]
        return [f.result() for f in futures]


def make_backend(backend: str, path: str | None, name: str, options: dict[str, Any]) -> LM:
    if backend == "hf":
        return HFBackend(path or "", name=name, **options)
    if backend == "openai":
        return OpenAIBackend(name=name, **options)
    raise ValueError(f"backend {backend!r} has no in-process form (vllm runs through ray.data.llm)")


# ------------------------------------------------------------------------------------- Ray Data stages
class Predictor:
    """The callable class Ray Data runs in an actor pool: model load once in __init__, batches in __call__.

    Input rows carry ``messages_json``; output adds raw_output, tokens_in, tokens_out, latency_s, error.
    """

    def __init__(self, backend: str, path: str | None, name: str, options: dict[str, Any],
                 generation: dict[str, Any]):
        self.lm = make_backend(backend, path, name, options)
        self.generation = generation

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        convs = [json.loads(m) for m in batch["messages_json"]]
        gens = self.lm.generate(convs, **self.generation) if convs else []
        out = dict(batch)
        out["raw_output"] = [g.text for g in gens]
        out["tokens_in"] = [g.tokens_in for g in gens]
        out["tokens_out"] = [g.tokens_out for g in gens]
        out["latency_s"] = [g.latency_s for g in gens]
        out["error"] = [g.error for g in gens]
        return out


def vllm_engine_kwargs(options: dict[str, Any], generation_max_tokens: int) -> dict[str, Any]:
    """The ``engine_kwargs`` of vLLMEngineProcessorConfig from the model's ``vllm:`` options."""
    return {
        "tensor_parallel_size": int(options["tensor_parallel_size"]),
        "pipeline_parallel_size": int(options["pipeline_parallel_size"]),
        "enable_prefix_caching": bool(options["enable_prefix_caching"]),
        "enable_chunked_prefill": bool(options["enable_chunked_prefill"]),
        "max_model_len": int(options["max_model_len"]),
        "max_num_batched_tokens": int(options["max_num_batched_tokens"]),
        "gpu_memory_utilization": float(options["gpu_memory_utilization"]),
        "dtype": str(options["dtype"]),
    }


def vllm_config(path: str, options: dict[str, Any], generation_max_tokens: int) -> Any:
    """A ``ray.data.llm.vLLMEngineProcessorConfig`` (constructing it needs Ray only; running it needs vllm)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    kwargs: dict[str, Any] = {
        "model_source": path, "engine_kwargs": vllm_engine_kwargs(options, generation_max_tokens),
        "batch_size": int(options["batch_size"]), "concurrency": int(options["concurrency"]),
        "max_concurrent_batches": int(options["max_concurrent_batches"]),
        "should_continue_on_error": True,  # one bad prompt becomes an error row, not a failed benchmark
    }
    if options.get("accelerator_type"):
        kwargs["accelerator_type"] = options["accelerator_type"]
    return vLLMEngineProcessorConfig(**kwargs)


def vllm_processor(path: str, options: dict[str, Any], generation: dict[str, Any]) -> Any:
    """A processor mapping rows with ``messages_json`` to the same output columns as ``Predictor``."""
    from ray.data.llm import build_processor

    sampling = {"max_tokens": int(generation["max_new_tokens"]), "temperature": float(generation["temperature"]),
                "top_p": float(generation["top_p"])}

    def pre(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "messages": json.loads(row["messages_json"]), "sampling_params": sampling}

    def post(row: dict[str, Any]) -> dict[str, Any]:
        keep = {k: v for k, v in row.items() if k in ("sample_id", "task", "task_version", "dataset_version",
                                                       "reference", "messages_json")}
        err = row.get("__inference_error__")
        return {**keep, "raw_output": row.get("generated_text") or "",
                "tokens_in": int(row.get("num_input_tokens") or 0),
                "tokens_out": int(row.get("num_generated_tokens") or 0),
                "latency_s": float(row.get("time_taken_llm") or 0.0), "error": str(err) if err else None}

    return build_processor(vllm_config(path, options, generation["max_new_tokens"]), preprocess=pre,
                           postprocess=post)
