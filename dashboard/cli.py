"""``mc dashboard`` (the web page) and ``mc status`` (the same figures in the terminal)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _settings(args: argparse.Namespace) -> Any:
    from dashboard.settings import DashboardSettings

    overrides = {
        k: v
        for k, v in {
            "dashboard_port": getattr(args, "port", None),
            "processor_urls": args.processors,
            "inference_urls": args.nodes,
        }.items()
        if v is not None
    }
    return DashboardSettings(**overrides)


def _dashboard(args: argparse.Namespace) -> int:
    from dashboard.collector import Collector
    from dashboard.server import DashboardServer

    s = _settings(args)
    server = DashboardServer(
        Collector(s, group_prefix=args.group_prefix),
        s.dashboard_host,
        s.dashboard_port,
        refresh_ms=int(s.dashboard_sample_s * 1000),
    )
    print(f"dashboard on {server.url} (metrics: {server.url}/metrics)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _status(args: argparse.Namespace) -> int:
    import time

    from dashboard.collector import Collector

    collector = Collector(_settings(args), group_prefix=args.group_prefix)
    try:
        collector.sample()
        time.sleep(1.0)  # a second sample gives events/s
        snap = collector.sample()
    finally:
        collector.stop()
    print(f"{'group':<32} {'topic':<28} {'part':>4} {'lag':>8} {'lag s':>8}")
    for r in snap["lag"]:
        print(f"{r['group']:<32} {r['topic']:<28} {r['partition']:>4} {r['lag_messages']:>8} {r['lag_seconds']:>8}")
    print()
    for topic, total in snap["events_total"].items():
        print(f"{topic:<40} {snap['events_per_s'].get(topic, 0):>10} ev/s {total:>10} total")
    for r in snap["rewards"]:
        print(f"reward {r['model_id']} v{r['adapter_version']}: mean {r['mean']} over {r['count']}")
    for n in snap["inference_nodes"]:
        print(f"node {n['node_id']}: {n['live']}")
    for c in snap.get("canaries", []):
        d = c.get("decision") or {}
        last = f"{d['outcome']} v{d['candidate_version']} by {d['decided_by']}" if d else "-"
        print(
            f"canary {c['model_id']}: live v{c['live_version']} ({c['live_mean']} over {c['live_rewards']}), "
            f"canary {c['canary_version'] if c['canary_version'] is not None else '-'} "
            f"(candidate v{c['candidate_version']}: {c['candidate_mean']} over {c['candidate_rewards']}), "
            f"last decision {last}{'' if c['nodes_agree'] else ', nodes disagree'}"
        )
    print(f"joined examples: {snap['joined_total']}")
    print(f"dead letters: {snap['dead_letters_total']} {snap['dead_letters_by_reason']}")
    for k, v in snap["errors"].items():
        print(f"error: {k}: {v}")
    return 0


def register(commands: Any, benches: Any) -> None:
    for name, func, help_ in (
        ("dashboard", _dashboard, "the ops web page on loopback (and /metrics)"),
        ("status", _status, "consumer lag, events/s, rewards, live adapters in the terminal"),
    ):
        p = commands.add_parser(name, help=help_)
        p.add_argument("--processors", help="comma-separated processor web URLs (MC_DASHBOARD_PROCESSOR_URLS)")
        p.add_argument("--nodes", help="comma-separated inference node URLs (MC_DASHBOARD_INFERENCE_URLS)")
        p.add_argument("--group-prefix", default="", help="only consumer groups whose id starts with this")
        if name == "dashboard":
            p.add_argument("--port", type=int, help="MC_DASHBOARD_PORT (default 8300)")
        p.set_defaults(func=func)
