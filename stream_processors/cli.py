"""``mc processor`` (run one worker), ``mc bench join`` and ``mc chaos join``."""

from __future__ import annotations

import argparse
import gc
import logging
from typing import Any

from stream_processors.settings import ProcessorSettings

__all__ = ["register", "run_worker"]


#: the collector's thresholds in the worker (CPython's defaults: 700, 10, 10)
GC_THRESHOLDS = (100_000, 50, 1000)


def run_worker(settings: ProcessorSettings | None = None) -> int:
    """Run one faust worker in this process until it is stopped (SIGTERM/SIGINT) or killed."""
    from faust.worker import Worker

    from stream_processors.app import create_app
    from stream_processors.topics import ensure_source_topics, ensure_worker_topics

    s = settings or ProcessorSettings()
    if s.processor_log_level.lower() != "debug":
        # aiokafka and faust build a debug record for every request: measurable at thousands/s.
        logging.disable(logging.DEBUG)
    n = ensure_source_topics(s)
    built = create_app(s, partitions=n)
    # Before any agent runs: every topic exists with its partitions in the metadata (issue #9).
    ensure_worker_topics(built.app, s, n)
    # What the worker imported and built lives as long as the process: frozen, the collector never scans
    # it again. The join allocates a few short-lived objects per record (events, states, outputs) and
    # CPython's default collects the young generation every 700 allocations: measured, ~12% of the worker's
    # time at 4,000 joined examples/s (stream_processors/README.md, "Throughput").
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    worker = Worker(built.app, loglevel=s.processor_log_level, quiet=True)
    worker.execute_from_commandline()  # returns only when the worker stops
    return 0


def _processor(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.web_port is not None:
        overrides["processor_web_port"] = args.web_port
    return run_worker(ProcessorSettings(**overrides))


def _bench_join(args: argparse.Namespace) -> dict[str, Any]:
    from stream_processors.bench import run

    return run(pairs=args.pairs, prediction_bytes=args.prediction_bytes)


def _run_join_bench(args: argparse.Namespace) -> int:
    import json

    print(json.dumps(_bench_join(args)))  # the last stdout line is the result
    return 0


def _chaos_join(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from stream_processors.chaos import SCENARIOS, run

    scenarios = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    keep = Path(args.keep_dir) if args.keep_dir else None
    result = run(runs=args.runs, scenarios=scenarios, pairs=args.pairs, publish_s=args.publish_s, keep_dir=keep)
    print(json.dumps(result))  # the last stdout line is the result
    return 0 if result["missing_total"] == 0 else 1


def register(commands: Any, benches: Any) -> None:
    p = commands.add_parser("processor", help="run one stream-processor worker (join, expiry, dead letters, metrics)")
    p.add_argument("--web-port", type=int, default=None, help="overrides MC_PROCESSOR_WEB_PORT")
    p.set_defaults(func=_processor)

    b = benches.add_parser("join", help="joined examples/s of one worker vs a bare aiokafka consumer")
    b.add_argument("--pairs", type=int, default=20_000, help="predictions (each with one reward)")
    b.add_argument("--prediction-bytes", type=int, default=1024)
    b.set_defaults(func=_run_join_bench)

    ch = commands.add_parser("chaos", help="crash, rebalance and broker-restart scenarios; counts missing examples")
    kinds = ch.add_subparsers(dest="chaos_name", required=True)
    cj = kinds.add_parser("join", help="the join: SIGKILLs, a worker joining and leaving, a broker restart")
    cj.add_argument("--runs", type=int, default=3, help="runs of each scenario (fresh topics each)")
    cj.add_argument("--scenarios", default="", help="comma-separated (default: all)")
    cj.add_argument("--pairs", type=int, default=3000, help="predictions per run, one reward each")
    cj.add_argument("--publish-s", type=float, default=20.0, help="seconds over which each run's stream is published")
    cj.add_argument("--keep-dir", default="", help="keep worker logs and stores here (default: a removed temp dir)")
    cj.set_defaults(func=_chaos_join)
