"""``mc bench sandbox``: the process sandbox's cost per step against the in-process executor."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _bench_sandbox(args: argparse.Namespace) -> dict[str, Any]:
    from maximum_continual.bench_sandbox import run

    return run(steps=args.steps, startups=args.startups)


def register(commands: Any, benches: Any) -> None:
    from mc_cli.main import _run_bench  # loaded already: register is called by mc_cli.main

    bench = benches.add_parser("sandbox", help="per-step overhead of the process sandbox vs the in-process executor")
    bench.add_argument("--steps", type=int, default=200, help="steps of each kind (a tool call, plain code)")
    bench.add_argument("--startups", type=int, default=3, help="sandbox process starts to time (median)")
    bench.set_defaults(func=_run_bench, bench=_bench_sandbox)
