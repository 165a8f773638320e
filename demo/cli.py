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
    "rounds": "demo_rounds",
    "minutes": "demo_minutes",
    "examples": "demo_examples_per_round",
    "heldout": "demo_heldout_prompts",
    "samples": "demo_heldout_samples",
    "seed": "demo_seed",
    "temperature": "demo_temperature",
    "lr": "demo_learning_rate",
    "steps": "demo_steps_per_window",
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
        "demo", help="the learning loop end to end: workload, rewards, training, hot-swaps, held-out reward"
    )
    p.add_argument("--rounds", type=int, help="most rounds (MC_DEMO_ROUNDS, default 12)")
    p.add_argument("--minutes", type=float, help="time budget (MC_DEMO_MINUTES, default 14)")
    p.add_argument("--examples", type=int, help="rewarded predictions per round (MC_DEMO_EXAMPLES_PER_ROUND)")
    p.add_argument("--heldout", type=int, help="held-out problems (MC_DEMO_HELDOUT_PROMPTS)")
    p.add_argument("--samples", type=int, help="samples per held-out problem (MC_DEMO_HELDOUT_SAMPLES)")
    p.add_argument("--seed", type=int, help="seed of the problems (MC_DEMO_SEED)")
    p.add_argument("--temperature", type=float, help="serving temperature (MC_DEMO_TEMPERATURE)")
    p.add_argument("--lr", type=float, help="the trainer's learning rate (MC_DEMO_LEARNING_RATE)")
    p.add_argument("--steps", type=int, help="the trainer's optimizer steps per window (MC_DEMO_STEPS_PER_WINDOW)")
    p.add_argument("--state-dir", dest="state_dir", help="where each run's folder goes (MC_DEMO_STATE_DIR)")
    p.add_argument("--keep-topics", action="store_true", help="keep the run's topics afterwards")
    p.set_defaults(func=_demo)
