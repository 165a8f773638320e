"""``mc``: stack, topics, benchmarks and the demo. Heavy parts are imported only by the subcommand
that needs them, so ``mc stack status`` starts in a fraction of a second."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from schemas.errors import MaximumContinualError

__all__ = ["main"]


def _stack(args: argparse.Namespace) -> int:
    from devstack import Stack
    from producers.admin import ensure_topics

    stack = Stack()
    names = args.components or None
    if args.action == "up":
        stack.up(names)
        if names is None or "kafka" in names:
            ensure_topics(stack.s, log=print)
            print("topics: ensured")
        return 0
    if args.action == "down":
        stack.down(names)
        return 0
    statuses = stack.status(names)
    width = max(len(st.name) for st in statuses)
    for st in statuses:
        state = "healthy" if st.healthy else ("running, not healthy" if st.running else "down")
        print(f"{st.name:<{width}}  {state:<20}  pid={st.pid or '-':<8} {st.detail}")
    return 0 if all(st.healthy for st in statuses) else 1


def _topics(args: argparse.Namespace) -> int:
    from producers.admin import ensure_topics
    from schemas.settings import ContractSettings

    registry = ensure_topics(ContractSettings(), log=print)
    for spec in registry.values():
        print(f"{spec.name}: {spec.partitions} partition(s) {json.dumps(spec.config)}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.name == "producer":
        from mc_cli.bench_producer import run

        print(json.dumps(run(events=args.events, event_bytes=args.event_bytes)))
        return 0
    raise SystemExit(f"unknown benchmark {args.name!r}")


def _demo(args: argparse.Namespace) -> int:
    from mc_cli.smoke import run

    print(json.dumps(run()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mc", description="Maximum Continual: stack, topics, benchmarks, demo")
    sub = p.add_subparsers(dest="command", required=True)

    st = sub.add_parser("stack", help="start, stop or report the local Kafka, S3 and vLLM")
    st.add_argument("action", choices=["up", "down", "status"])
    st.add_argument("components", nargs="*", metavar="COMPONENT",
                    help="kafka, s3 or vllm (default: all)")
    st.set_defaults(func=_stack)

    tp = sub.add_parser("topics", help="create the contract's topics")
    tp.add_argument("action", choices=["ensure"])
    tp.set_defaults(func=_topics)

    bn = sub.add_parser("bench", help="benchmarks; the last line printed is one JSON object")
    bn.add_argument("name", choices=["producer"])
    bn.add_argument("--events", type=int, default=50_000)
    bn.add_argument("--event-bytes", type=int, default=1024)
    bn.set_defaults(func=_bench)

    dm = sub.add_parser("demo", help="the main job (for now: a smoke round trip through every component)")
    dm.set_defaults(func=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MaximumContinualError as exc:
        print(f"mc: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
