"""``mc demo``: the end-to-end learning demo (what ``make demo`` runs); ``mc bench learn``: the live
loop over several tasks and seeds (:mod:`demo.bench_learn`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
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


def _split(text: str | None, default: Sequence[str]) -> list[str]:
    if text is None:
        return list(default)
    return [] if text.strip() in ("", "none") else [x.strip() for x in text.split(",") if x.strip()]


def _adapters(specs: Sequence[str]) -> dict[str, str]:
    """``LABEL=PATH`` flags as ``label -> absolute folder``; a missing folder or a label given twice is refused."""
    from pathlib import Path

    out: dict[str, str] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise ValueError(f"{spec!r} is not LABEL=PATH")
        if label in out or label == "base":
            raise ValueError(f"label {label!r} given twice (or 'base', the base model's)")
        folder = Path(path).resolve()
        if not (folder / "adapter_config.json").is_file():
            raise ValueError(f"{folder} holds no adapter_config.json")
        out[label] = str(folder)
    return out


def _bench_learn(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from demo.bench_base import load_adapters, measure_kinds
    from demo.bench_cases import CASES
    from demo.bench_learn import plan_runs, pool_saved, run_bench
    from demo.bench_tasks import BENCH_TASKS, make_task
    from demo.settings import DemoSettings
    from schemas.errors import AdapterError

    if args.pool:
        try:
            line = pool_saved([Path(p) for p in args.pool])
        except (OSError, ValueError, KeyError) as exc:
            print(f"mc bench learn --pool: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(line))
        return 0
    tasks = _split(args.tasks, BENCH_TASKS)
    try:
        specs = [make_task(name) for name in tasks]  # an unknown name fails before anything starts
    except ValueError as exc:
        print(f"mc bench learn: {exc}", file=sys.stderr)
        return 2
    settings = DemoSettings(demo_minutes=args.minutes)
    if args.adapter and not args.base:
        print("mc bench learn: --adapter needs --base N (the prompts to answer)", file=sys.stderr)
        return 2
    if args.base:
        try:
            adapters = _adapters(args.adapter or [])
            served = asyncio.run(load_adapters(settings, adapters)) if adapters else {}
        except (ValueError, AdapterError) as exc:
            print(f"mc bench learn --adapter: {exc}", file=sys.stderr)
            return 2
        for spec in specs:
            for label, model in [("base", None), *served.items()]:
                kinds = asyncio.run(measure_kinds(spec, settings, args.base, model=model))
                rows = {k: {"reward": v.mean, "ci_half_width": v.half_width, "n": v.n} for k, v in kinds.items()}
                print(json.dumps({"task": spec.name, "model": label, **rows.pop("all"), "kinds": rows}))
        return 0
    cases = _split(args.cases, () if args.quick else CASES)
    unknown = set(cases) - set(CASES)
    if unknown:
        print(f"mc bench learn: unknown case(s) {sorted(unknown)}; choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    seeds = 1 if args.quick else args.seeds
    runs = plan_runs(tasks, seeds, cases, args.case_task, args.case_seeds, first_seed=args.first_seed)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        line = run_bench(runs, settings, Path(args.out_dir), stretch_windows=args.stretch_windows)
    except KeyboardInterrupt:
        print("mc bench learn: interrupted; its processes are stopped", file=sys.stderr)
        return 130
    print(json.dumps(line))  # the last line: one JSON object
    return 0


def _register_bench(benches: Any) -> None:
    b = benches.add_parser(
        "learn", help="the live loop on several tasks and seeds: base vs last versions' reward, rise with 95%% CI"
    )
    b.add_argument("--tasks", help="comma-separated tasks (default: arithmetic,shop,lists)")
    b.add_argument("--seeds", type=int, default=3, help="seeds per task (default 3)")
    b.add_argument(
        "--first-seed",
        dest="first_seed",
        type=int,
        default=0,
        help="seeds count from this one (default 0): more seeds in a later invocation, pooled with --pool",
    )
    b.add_argument(
        "--pool",
        nargs="+",
        metavar="JSON",
        help="run nothing: the table and last line over the runs of saved benchmarks (learn-<time>.json)",
    )
    b.add_argument("--quick", action="store_true", help="one seed per task and no robustness cases")
    b.add_argument("--minutes", type=float, default=8.0, help="each run, start-up to teardown (default 8)")
    b.add_argument("--cases", help="robustness cases, comma-separated: noise,zeros,ones (default: all; quick: none)")
    b.add_argument("--case-task", dest="case_task", default="arithmetic", help="the task the cases run on")
    b.add_argument("--case-seeds", dest="case_seeds", type=int, default=1, help="seeds per case (default 1)")
    b.add_argument(
        "--stretch-windows",
        dest="stretch_windows",
        type=int,
        default=2,
        help="zeros/ones: the first K windows' sent rewards are constant (default 2)",
    )
    b.add_argument("--out-dir", dest="out_dir", default=".mc/bench", help="results and run folders (.mc/bench)")
    b.add_argument(
        "--base", type=int, metavar="N", help="only measure each task's base-model reward on N prompts (no training)"
    )
    b.add_argument(
        "--adapter",
        action="append",
        metavar="LABEL=PATH",
        help="with --base: also measure this saved adapter folder (repeatable), overall and by kind of prompt",
    )
    b.set_defaults(func=_bench_learn)


def register(commands: Any, benches: Any) -> None:
    _register_bench(benches)
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
