"""``mc``: stack, topics, benchmarks, the demo, and each part's own commands.

Each deployable part may ship a ``cli`` module with ``register(commands, benches)``; it adds its
subcommands (``mc processor``, ``mc trainer``, ...) and benchmarks (``mc bench NAME``). Heavy parts
are imported only when their command runs, so ``mc stack status`` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from schemas.errors import MaximumContinualError
from schemas.extras import missing_extra

__all__ = ["build_parser", "main"]

#: modules that add commands; a part that does not ship one yet is skipped
PART_CLIS = (
    "devstack.cli",
    "stream_processors.cli",
    "trainer.cli",
    "gate.cli",  # after trainer.cli: adds status|promote to its `mc adapters`
    "inference.cli",
    "maximum_continual.cli",
    "dashboard.cli",
    "demo.cli",
)


def _stack(args: argparse.Namespace) -> int:
    from devstack import Stack
    from producers.admin import ensure_topics
    from schemas.settings import SECRETS_FILE

    stack = Stack()  # writes this install's secrets on first use (devstack.secrets)
    names = args.components or None
    if args.action == "secrets":
        # For docker compose: `docker compose --env-file .mc/secrets.env up` (docker-compose.yml).
        print((stack.s.state_dir / SECRETS_FILE).resolve())
        return 0
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


def _init(args: argparse.Namespace) -> int:
    from producers.admin import ensure_topics
    from schemas.settings import ContractSettings
    from schemas.storage import ensure_bucket

    settings = ContractSettings()
    ensure_topics(settings, log=print)
    ensure_bucket(settings)
    print(f"topics and bucket {settings.s3_bucket!r} ready")
    return 0


def _bench_producer(args: argparse.Namespace) -> dict[str, Any]:
    from mc_cli.bench_producer import run

    return run(events=args.events, event_bytes=args.event_bytes)


def _smoke(args: argparse.Namespace) -> int:
    from mc_cli.smoke import run

    print(json.dumps(run()))
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from pathlib import Path

    from schemas.json_schema import export_schemas

    for path in export_schemas(Path(args.out)):
        print(path)
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    # A benchmark returns its figures; the last line printed is always one JSON object.
    print(json.dumps(args.bench(args)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mc", description="Maximum Continual: stack, topics, parts, benchmarks, demo")
    commands = p.add_subparsers(dest="command", required=True)

    st = commands.add_parser(
        "stack", help="start, stop or report the local Kafka, S3 and vLLM; `secrets`: path of this install's keys"
    )
    st.add_argument("action", choices=["up", "down", "status", "secrets"])
    st.add_argument("components", nargs="*", metavar="COMPONENT", help="kafka, s3 or vllm (default: all)")
    st.set_defaults(func=_stack)

    tp = commands.add_parser("topics", help="create the contract's topics")
    tp.add_argument("action", choices=["ensure"])
    tp.set_defaults(func=_topics)

    it = commands.add_parser("init", help="create the contract's topics and the adapters bucket (idempotent)")
    it.set_defaults(func=_init)

    sc = commands.add_parser("schemas", help="the JSON Schema of each event of the contract, for any language")
    sc.add_argument("action", choices=["export"])
    # The same files ship in the package (schemas/json); `--out schemas/json` regenerates them in a checkout.
    sc.add_argument("--out", metavar="DIR", default="mc-schemas", help="folder to write them to (default: %(default)s)")
    sc.set_defaults(func=_schemas)

    bn = commands.add_parser("bench", help="benchmarks; the last line printed is one JSON object")
    benches = bn.add_subparsers(dest="bench_name", required=True)
    bp = benches.add_parser("producer", help="EventPublisher vs a bare confluent-kafka Producer")
    bp.add_argument("--events", type=int, default=50_000)
    bp.add_argument("--event-bytes", type=int, default=1024)
    bp.set_defaults(func=_run_bench, bench=_bench_producer)

    sm = commands.add_parser("smoke", help="a round trip through Kafka, S3 and vLLM (quick health check)")
    sm.set_defaults(func=_smoke)

    for module in PART_CLIS:
        try:
            part = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # skip a part that is not there; a missing dependency *inside* a part is a real error
            if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
                raise
            continue
        part.register(commands, benches)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MaximumContinualError as exc:
        print(f"mc: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a part run without its install extra: say which one
        missing = missing_extra(exc, f"mc {args.command}")
        if missing is None:
            raise
        print(f"mc: {type(missing).__name__}: {missing}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
