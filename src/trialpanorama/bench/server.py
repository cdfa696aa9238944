"""A small OpenAI-compatible server for the project's own checkpoints (FastAPI + uvicorn over transformers).

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``. Why not Ray Serve: the point
is to put the project's checkpoints behind the same HTTP contract hosted models use, so the ``openai``
backend (and any other client) benchmarks them the same way; one process per model folder is enough for
that and starts in seconds. Requests arriving together are answered in one batched ``generate`` (a
micro-batcher thread waits up to ``batch_wait_ms`` to fill a batch), so concurrent clients share the model.

A bearer key is optional: when the env var named by ``api_key_env`` is set, every /v1 request must send
``Authorization: Bearer <key>``; the key is compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

from fastapi import FastAPI, Request  # module level: FastAPI resolves the Request annotation by name

from trialpanorama.bench.lm import LM, HFBackend


class MicroBatcher:
    """One thread owns the model; requests queued within ``wait_s`` of each other are generated together."""

    def __init__(self, lm: LM, max_batch: int = 8, wait_s: float = 0.01):
        self.lm, self.max_batch, self.wait_s = lm, max_batch, wait_s
        self.q: queue.Queue[tuple[list[dict[str, str]], tuple[int, float, float], Future]] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"batcher-{lm.name}")
        self.thread.start()

    def submit(self, messages: list[dict[str, str]], max_tokens: int, temperature: float, top_p: float) -> Future:
        fut: Future = Future()
        self.q.put((messages, (max_tokens, temperature, top_p), fut))
        return fut

    def _loop(self) -> None:
        while True:
            items = [self.q.get()]
            deadline = time.monotonic() + self.wait_s
            while len(items) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    items.append(self.q.get(timeout=left))
                except queue.Empty:
                    break
            groups: dict[tuple[int, float, float], list] = {}
            for it in items:
                groups.setdefault(it[1], []).append(it)
            for (max_tokens, temperature, top_p), group in groups.items():
                try:
                    gens = self.lm.generate([g[0] for g in group], max_tokens, temperature, top_p)
                    for g, gen in zip(group, gens, strict=True):
                        g[2].set_result(gen)
                except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                    for g in group:
                        g[2].set_exception(exc)


def _error(status: int, message: str, kind: str) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": status}})


def create_app(models: dict[str, LM], api_key_env: str | None = None, max_batch: int = 8,
               batch_wait_ms: float = 10.0, default_max_tokens: int = 256) -> Any:
    """The FastAPI app serving ``models`` (name -> loaded backend)."""
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        raise RuntimeError(f"--api-key-env {api_key_env} is not set in the environment")
    batchers = {name: MicroBatcher(lm, max_batch, batch_wait_ms / 1000.0) for name, lm in models.items()}
    created = int(time.time())
    app = FastAPI(title="TrialPanorama model server", docs_url=None, redoc_url=None)

    def authorized(request: Request) -> bool:
        if not key:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "models": sorted(models)}

    @app.get("/v1/models")
    def list_models(request: Request) -> Any:
        if not authorized(request):
            return _error(401, "missing or invalid bearer key", "invalid_request_error")
        return {"object": "list", "data": [{"id": n, "object": "model", "created": created, "owned_by": "trialpanorama"}
                                           for n in sorted(models)]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        if not authorized(request):
            return _error(401, "missing or invalid bearer key", "invalid_request_error")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "body is not JSON", "invalid_request_error")
        name = body.get("model") or (next(iter(models)) if len(models) == 1 else None)
        if name not in batchers:
            return _error(404, f"model {name!r} not served; see /v1/models", "invalid_request_error")
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                     for m in messages):
            return _error(400, "messages must be a list of {role, content}", "invalid_request_error")
        if body.get("stream"):
            return _error(400, "stream=true is not supported", "invalid_request_error")
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or default_max_tokens)
        temperature = float(body.get("temperature") if body.get("temperature") is not None else 0.0)
        top_p = float(body.get("top_p") if body.get("top_p") is not None else 1.0)
        msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        gen = await asyncio.wrap_future(batchers[name].submit(msgs, max_tokens, temperature, top_p))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                         "finish_reason": "length" if gen.tokens_out >= max_tokens else "stop"}],
            "usage": {"prompt_tokens": gen.tokens_in, "completion_tokens": gen.tokens_out,
                      "total_tokens": gen.tokens_in + gen.tokens_out},
        }

    return app


def load_models(specs: dict[str, str], tracking_uri: str | None = None, **hf_options: Any) -> dict[str, LM]:
    """name -> HFBackend for each ``name: path`` (paths may be ``models:/name/version`` registry URIs)."""
    from trialpanorama.bench.lm import resolve_model_path

    out: dict[str, LM] = {}
    for name, path in specs.items():
        local, _ = resolve_model_path(path, tracking_uri)
        out[name] = HFBackend(local, name=name, **hf_options)
    return out
