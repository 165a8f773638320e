"""``mc adapters status`` and ``mc adapters promote``: the canary as people see and override it.

``mc adapters rollback`` (the trainer's command) stays what it was: a signed rollback on the live key,
which also ends any canary (:mod:`schemas.canary`).
"""

from __future__ import annotations

import math
from typing import Any

from gate.core import decision_update
from gate.decide import decide
from gate.service import read_state
from gate.settings import GateSettings
from producers.publisher import EventPublisher
from schemas.adapter_store import AdapterStore
from schemas.errors import AdapterError
from schemas.events import AdapterUpdate, GateDecision
from schemas.signing import sign_update
from schemas.topics import TopicKey

__all__ = ["promote", "status"]


def _brief(update: AdapterUpdate | None) -> dict[str, Any] | None:
    if update is None:
        return None
    return {"version": update.version, "created_at": update.created_at.isoformat(timespec="seconds")}


def status(settings: GateSettings, model_id: str) -> dict[str, Any]:
    """Live, canary (with both arms' rewards and the test's interval now), proposal, last decision."""
    core = read_state(settings)
    view = core.view(model_id)
    out: dict[str, Any] = {
        "model_id": model_id,
        "live": {"version": view.live_version, "rollback": bool(view.live and view.live.rollback)},
        "canary": _brief(view.canary),
        "proposal": _brief(view.proposal),
        "ended": sorted(view.ended),
        "last_decision": view.last_decision.model_dump(mode="json") if view.last_decision else None,
    }
    arms = core.arms.get(model_id)
    if arms is not None:
        verdict = decide(arms.candidate, arms.live, core.params)
        out["canary"].update(
            candidate_rewards=arms.candidate.n,
            candidate_mean=round(arms.candidate.mean, 4) if arms.candidate.n else None,
            live_rewards=arms.live.n,
            live_mean=round(arms.live.mean, 4) if arms.live.n else None,
            diff_low=None if math.isnan(verdict.low) else round(verdict.low, 4),
            diff_high=None if math.isnan(verdict.high) else round(verdict.high, 4),
            would_decide=verdict.outcome,
            reason=verdict.reason,
        )
    return out


def _manifest(settings: GateSettings, model_id: str, version: int) -> AdapterUpdate:
    found = AdapterStore(settings).manifest_or_none(model_id, version)
    if found is None:
        raise AdapterError(f"{model_id} has no v{version} in s3://{settings.s3_bucket}/")
    return found


def promote(settings: GateSettings, model_id: str, version: int | None = None) -> AdapterUpdate:
    """Announce the canary (or ``version``) live, as a person's decision; every node switches to it."""
    view = read_state(settings, examples=False).view(model_id)
    known = [u for u in (view.canary, view.proposal) if u is not None]
    if version is None:
        if not known:
            raise AdapterError(f"{model_id} has no canary or candidate to promote; name a version")
        version = known[0].version
    if version < 1:
        raise AdapterError("promote names an adapter version (1 or more); to serve the base model, roll back to 0")
    candidate = next((u for u in known if u.version == version), None) or _manifest(settings, model_id, version)
    if candidate.model_id != model_id or candidate.version != version:
        raise AdapterError(f"the manifest of {model_id} v{version} names {candidate.model_id} v{candidate.version}")
    decision = GateDecision(
        outcome="promote",
        candidate_version=version,
        live_version=view.live_version,
        decided_by="person",
        reason="mc adapters promote",
    )
    update = sign_update(decision_update(view, candidate, decision), settings.signing_key())
    with EventPublisher(settings) as events:
        events.publish(TopicKey.ADAPTER_UPDATES, update).result(settings.publish_timeout_s)
    return update
