"""``mc inference-node`` (run a node), ``mc bench swap`` (hot-swap under load), ``mc bench tenants``."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _node_settings(args: argparse.Namespace) -> Any:
    from inference.settings import InferenceSettings

    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["node_host"] = args.host
    if args.port is not None:
        overrides["node_port"] = args.port
    if args.node_id is not None:
        overrides["node_id"] = args.node_id
    return InferenceSettings(**overrides)


def _run_node(args: argparse.Namespace) -> int:
    from inference.server import serve

    serve(_node_settings(args), log_level=args.log_level)
    return 0


def add_node_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="bind address (MC_NODE_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (MC_NODE_PORT, default 8100)")
    p.add_argument("--node-id", help="this node's name (MC_NODE_ID, default host-pid)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _bench_swap(args: argparse.Namespace) -> int:
    import json

    from inference.bench import run

    print(
        json.dumps(
            run(
                clients=args.clients,
                swaps=args.swaps,
                steady_s=args.steady_s,
                swap_interval_s=args.swap_interval_s,
                max_tokens=args.max_tokens,
            )
        )
    )
    return 0


def _bench_tenants(args: argparse.Namespace) -> int:
    import json

    from inference.bench_tenants import run

    print(json.dumps(run(tenants=args.tenants, requests=args.requests, clients=args.clients)))
    return 0


def register(commands: Any, benches: Any) -> None:
    node = commands.add_parser("inference-node", help="the inference node: adapter watcher + proxy in front of vLLM")
    add_node_arguments(node)
    node.set_defaults(func=_run_node)

    bench = benches.add_parser("swap", help="adapter hot-swaps under concurrent load through an inference node")
    bench.add_argument("--clients", type=int, default=4)
    bench.add_argument("--swaps", type=int, default=5)
    bench.add_argument("--steady-s", type=float, default=30.0, help="seconds of load before the swaps")
    bench.add_argument("--swap-interval-s", type=float, default=3.0)
    bench.add_argument("--max-tokens", type=int, default=16)
    bench.set_defaults(func=_bench_swap)

    tenants = benches.add_parser("tenants", help="many model_ids, each with its own adapter, on one node and vLLM")
    tenants.add_argument("--tenants", type=int, default=50)
    tenants.add_argument("--requests", type=int, default=400)
    tenants.add_argument("--clients", type=int, default=4)
    tenants.set_defaults(func=_bench_tenants)
