"""``mc bench serve``: the stack's vLLM (LoRA on, an adapter in use) against a plain float32 vLLM."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _bench_serve(args: argparse.Namespace) -> int:
    import json

    from devstack.bench_serve import run

    print(json.dumps(run(requests=args.requests, max_tokens=args.max_tokens, rounds=args.rounds)))
    return 0


def register(commands: Any, benches: Any) -> None:
    bs = benches.add_parser("serve", help="generated tokens/s of the stack's vLLM (LoRA) vs a plain float32 vLLM")
    bs.add_argument("--requests", type=int, default=32, help="concurrent chat requests per burst")
    bs.add_argument("--max-tokens", type=int, default=128, help="tokens generated per request (ignore_eos)")
    bs.add_argument("--rounds", type=int, default=3, help="bursts per side, sides alternating")
    bs.set_defaults(func=_bench_serve)
