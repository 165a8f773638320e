"""``mc gate`` (the canary gate) and ``mc adapters status|promote`` (``list|rollback`` are the trainer's)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from typing import Any

__all__ = ["register"]


def _gate(args: argparse.Namespace) -> int:
    from gate.service import GateService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service = GateService()
    service.run(stop)
    logging.getLogger("gate").info("stopped: %s", dict(service.announced))
    return 0


def _status(args: argparse.Namespace) -> int:
    from gate.admin import status
    from gate.settings import GateSettings

    out = status(GateSettings(), args.model_id)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['model_id']}: live v{out['live']['version']}{' (rollback)' if out['live']['rollback'] else ''}")
    canary = out["canary"]
    if canary is None:
        print("  canary: none")
    else:
        print(
            f"  canary: v{canary['version']} since {canary['created_at']}: "
            f"candidate {canary.get('candidate_mean')} over {canary.get('candidate_rewards', 0)} rewards, "
            f"live {canary.get('live_mean')} over {canary.get('live_rewards', 0)}; "
            f"difference in [{canary.get('diff_low')}, {canary.get('diff_high')}] ({canary.get('reason', '')})"
        )
    if out["proposal"] is not None:
        print(f"  waiting: v{out['proposal']['version']} (the next canary)")
    d = out["last_decision"]
    if d is not None:
        print(
            f"  last decision: {d['outcome']} v{d['candidate_version']} against live v{d['live_version']} "
            f"by {d['decided_by']}: candidate {d['candidate_mean']} over {d['candidate_rewards']}, "
            f"live {d['live_mean']} over {d['live_rewards']}; {d['reason']}"
        )
    if out["ended"]:
        print(f"  never served again: {', '.join(f'v{v}' for v in out['ended'])}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from gate.admin import promote
    from gate.settings import GateSettings

    update = promote(GateSettings(), args.model_id, args.version)
    print(f"{args.model_id}: v{update.version} announced live (update {update.update_id})")
    return 0


def _adapters_actions(commands: Any) -> Any:
    """The subcommands of ``mc adapters`` (the trainer's part creates it when installed)."""
    parser = commands.choices.get("adapters")
    if parser is None:
        parser = commands.add_parser("adapters", help="a model's adapter versions and its canary")
        return parser.add_subparsers(dest="adapters_action", required=True)
    for action in parser._actions:  # argparse keeps the subparsers as one of the parser's actions
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("mc adapters has no subcommands")


def register(commands: Any, benches: Any) -> None:
    gt = commands.add_parser("gate", help="the canary gate: promote or refuse new adapter versions on live reward")
    gt.set_defaults(func=_gate)

    actions = _adapters_actions(commands)
    st = actions.add_parser("status", help="live version, canary with both arms' rewards, last decision")
    st.add_argument("model_id")
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.set_defaults(func=_status)
    pr = actions.add_parser("promote", help="announce the canary (or VERSION) live, as a person's decision")
    pr.add_argument("model_id")
    pr.add_argument("version", type=int, nargs="?", default=None)
    pr.set_defaults(func=_promote)
