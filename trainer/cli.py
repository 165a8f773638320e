"""``mc trainer``, ``mc adapters list|rollback`` and ``mc bench trainer``.

The base model defaults to the local stack's converted checkpoint when ``MC_TRAINER_BASE_MODEL_PATH`` is
unset: that default is resolved here, at the command line edge, so the service itself never depends
on the dev stack (a deployment sets ``MC_TRAINER_BASE_MODEL_PATH``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from typing import Any

from schemas.errors import ConfigurationError
from trainer.settings import TrainerSettings

__all__ = ["main", "register", "resolved_settings"]


def resolved_settings() -> TrainerSettings:
    settings = TrainerSettings()
    if settings.device != "cuda":
        from trainer.cpus import enable_huge_pages

        enable_huge_pages(settings.huge_pages)  # before anything imports torch
    if settings.base_model_path is not None:
        return settings
    try:
        from devstack.checkpoint import ensure_checkpoint
        from devstack.settings import StackSettings
    except ImportError as exc:
        raise ConfigurationError("MC_TRAINER_BASE_MODEL_PATH is not set and the local stack is not installed") from exc
    return settings.model_copy(update={"base_model_path": ensure_checkpoint(StackSettings().cache_dir)})


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _trainer(args: argparse.Namespace) -> int:
    _logging()
    settings = resolved_settings()  # first: it may set torch's allocator up, before torch is imported
    from trainer.service import TrainerService

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service = TrainerService(settings)
    server = None
    if settings.trainer_metrics_port is not None:
        from trainer.metrics import serve_metrics

        server = serve_metrics(service.metrics.registry, settings.trainer_metrics_host, settings.trainer_metrics_port)
        logging.getLogger("trainer").info("metrics on http://%s:%d/metrics", settings.trainer_metrics_host, server.port)
    try:
        n = service.run(max_windows=args.max_windows, idle_exit_s=args.idle_exit, stop=stop)
    finally:
        if server is not None:
            server.close()
    logging.getLogger("trainer").info("stopped after %d window(s): %s", n, service.counters)
    return 0


def _list(args: argparse.Namespace) -> int:
    from trainer.adapters import list_versions

    rows, current = list_versions(TrainerSettings(), args.model_id)
    if not rows:
        print(f"{args.model_id}: no adapter versions in S3")
    for row in rows:
        u = row.update
        reward = u.metrics.get("mean_reward")
        print(
            f"{'*' if row.current else ' '} v{u.version:<4} parent=v{u.parent_version} "
            f"examples={u.window.example_count:<4} mean_reward={'-' if reward is None else f'{reward:.3f}'} "
            f"created={u.created_at.isoformat(timespec='seconds')} {u.uri}"
        )
    if current is not None:
        print(f"current: v{current.version}{' (rollback)' if current.rollback else ''}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from trainer.adapters import rollback

    update = rollback(TrainerSettings(), args.model_id, args.version)
    print(f"{args.model_id}: v{update.version} announced as current (update {update.update_id})")
    return 0


def _bench(args: argparse.Namespace) -> int:
    settings = resolved_settings()  # first: it may set torch's allocator up, before torch is imported
    from trainer.bench import run
    from trainer.service import build_slot

    figures: dict[str, Any] = run(
        settings, build_slot(settings), examples=args.examples, repeats=args.repeats, steps=args.turns
    )
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    last = ("trainer_tokens_per_s", "peft_loop_tokens_per_s", "ratio", "window_train_s", "peak_rss_mb")
    print(json.dumps({k: figures[k] for k in last}))
    return 0


def register(commands: Any, benches: Any) -> None:
    tr = commands.add_parser("trainer", help="run the trainer: training-examples -> LoRA adapters -> S3")
    tr.add_argument("--max-windows", type=int, default=None, help="stop after publishing this many windows")
    tr.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="S",
        help="stop when no example came for S seconds and no window is open",
    )
    tr.set_defaults(func=_trainer)

    ad = commands.add_parser("adapters", help="list a model's adapter versions, or roll back to one")
    actions = ad.add_subparsers(dest="adapters_action", required=True)
    ls = actions.add_parser("list", help="versions in S3; * marks the one announced as current")
    ls.add_argument("model_id")
    ls.set_defaults(func=_list)
    rb = actions.add_parser("rollback", help="announce an older version (0 = base) as current again")
    rb.add_argument("model_id")
    rb.add_argument("version", type=int)
    rb.set_defaults(func=_rollback)

    bt = benches.add_parser("trainer", help="the trainer on one window vs a plain PEFT loop; memory; window time")
    bt.add_argument("--examples", type=int, default=16, help="examples in the compared window")
    bt.add_argument("--turns", type=int, default=1, help="agent turns per example in the compared window")
    bt.add_argument("--repeats", type=int, default=3, help="rounds (one run per side each); medians count")
    bt.set_defaults(func=_bench)


def main(argv: list[str] | None = None) -> int:
    """``python -m trainer``: the same as ``mc trainer``."""
    parser = argparse.ArgumentParser(prog="python -m trainer")
    commands = parser.add_subparsers(dest="command")
    register(commands, argparse.ArgumentParser().add_subparsers())
    args = parser.parse_args(["trainer", *(argv or [])])
    return int(args.func(args))
