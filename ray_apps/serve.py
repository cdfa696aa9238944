"""Serve the project's checkpoints behind an OpenAI-compatible API on 127.0.0.1.

    python ray_apps/serve.py --model tiny=.cache/models/tiny-llama [--model ft=models:/trialpanorama-tiny/1]
        [--port 8000] [--api-key-env TP_SERVE_KEY]
    python ray_apps/serve.py --config conf/bench/tiny-cpu.yaml     # every hf model of a bench config

Then: curl http://127.0.0.1:8000/v1/chat/completions -d '{"model": "tiny", "messages": [...]}'
"""

from __future__ import annotations

import argparse
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH", help="repeatable")
    ap.add_argument("--config", help="a bench config: serve its hf models")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--allow-remote", action="store_true", help="permit a non-loopback --host")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--api-key-env", default=None, help="env var holding the bearer key clients must send")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--batch-wait-ms", type=float, default=10.0)
    ap.add_argument("--max-input-tokens", type=int, default=2048)
    ap.add_argument("--torch-threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.host not in LOOPBACK and not args.allow_remote:
        ap.error(f"--host {args.host}: the server binds to loopback unless --allow-remote is given")
    specs = dict(item.split("=", 1) for item in args.model)
    tracking_uri = None
    if args.config:
        from trialpanorama.bench.config import load_bench
        from trialpanorama.config import load_config

        cfg = load_config(args.config, args.overrides)
        tracking_uri = cfg.tracking_uri
        specs.update({m.name: m.path for m in load_bench(cfg).models if m.backend == "hf" and m.path})
    if not specs:
        ap.error("give --model NAME=PATH or --config")
    import uvicorn

    from trialpanorama.bench.server import create_app, load_models

    models = load_models(specs, tracking_uri, max_input_tokens=args.max_input_tokens,
                         micro_batch_size=args.max_batch, torch_threads=args.torch_threads)
    app = create_app(models, args.api_key_env, args.max_batch, args.batch_wait_ms)
    print(f"serving {sorted(models)} on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
