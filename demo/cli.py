"""``mc demo``: the end-to-end learning demo (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

__all__ = ["register"]

#: flag -> settings field; a flag left out keeps the MC_DEMO_* / default value
_FLAGS = {
    "minutes": "demo_minutes",
    "max_versions": "demo_max_versions",
    "max_ahead": "demo_max_ahead",
    "after_min_samples": "demo_after_min_samples",
    "seed": "demo_seed",
    "temperature": "demo_temperature",
    "state_dir": "demo_state_dir",
}


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo like Ctrl-C: its parts are stopped on the way out


def _demo(args: argparse.Namespace) -> int:
    from demo.run import run_demo
    from demo.settings import DemoSettings

    overrides = {field: getattr(args, flag) for flag, field in _FLAGS.items() if getattr(args, flag) is not None}
    if args.keep_topics:
        overrides["demo_keep_topics"] = True
    settings = DemoSettings(**overrides)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        line = run_demo(settings)
    except KeyboardInterrupt:
        print("mc demo: interrupted; its processes are stopped", file=sys.stderr)
        return 130
    print(json.dumps(line))  # the last line: one JSON object
    return 0


def register(commands: Any, benches: Any) -> None:
    p = commands.add_parser(
        "demo", help="the live learning loop: new prompts on the live adapter, rewards, training, hot-swaps"
    )
    p.add_argument("--minutes", type=float, help="the whole run, start-up to teardown (MC_DEMO_MINUTES, default 14)")
    p.add_argument(
        "--max-versions",
        dest="max_versions",
        type=int,
        help="also stop once this many versions went live and the newest answered a window (MC_DEMO_MAX_VERSIONS)",
    )
    p.add_argument(
        "--max-ahead",
        dest="max_ahead",
        type=int,
        help="windows of generation ahead of the window in training (MC_DEMO_MAX_AHEAD, default 1)",
    )
    p.add_argument(
        "--after-min-samples",
        dest="after_min_samples",
        type=int,
        help="'after' pools the newest versions until this many prompts (MC_DEMO_AFTER_MIN_SAMPLES, default 48)",
    )
    p.add_argument("--seed", type=int, help="seed of the prompt stream (MC_DEMO_SEED)")
    p.add_argument("--temperature", type=float, help="serving temperature (MC_DEMO_TEMPERATURE)")
    p.add_argument("--state-dir", dest="state_dir", help="where each run's folder goes (MC_DEMO_STATE_DIR)")
    p.add_argument("--keep-topics", action="store_true", help="keep the run's topics afterwards")
    p.set_defaults(func=_demo)
