"""The gate's state, without Kafka: adapter updates and training examples in, updates to announce out.

Per model it keeps the :class:`~schemas.canary.ModelView` of adapter-updates and, while a canary runs,
two reward arms from the training examples (each example is a prediction and one reward; the
prediction names the version that answered):

- the candidate arm: rewards of predictions the canary version answered;
- the live arm: rewards of predictions the live version answered *since the canary started*
  (prediction ``created_at`` at or after the canary record's), so both arms see the same period's
  traffic and a drift in the prompts does not count as a difference between the versions.

An example id is counted once (the join may re-emit an example). :meth:`GateCore.due` returns what
to announce: a canary for the newest proposal when none runs, and a verdict when a look decides.
Nothing is announced twice while waiting to read it back from the topic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gate.decide import GateParams, RewardStats, Verdict, decide, look_index
from schemas.canary import ModelView
from schemas.events import AdapterUpdate, GateDecision, TrainingExample, new_id, utcnow

__all__ = ["Arms", "GateCore"]


@dataclass
class Arms:
    """The reward statistics of one canary against the live version it ran beside."""

    canary: AdapterUpdate
    live_version: int
    candidate: RewardStats = field(default_factory=RewardStats)
    live: RewardStats = field(default_factory=RewardStats)
    seen: set[str] = field(default_factory=set)
    looked: int = 0
    verdict: Verdict | None = None


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class GateCore:
    def __init__(self, params: GateParams) -> None:
        self.params = params
        self.views: dict[str, ModelView] = {}
        self.arms: dict[str, Arms] = {}
        #: model -> the update_id we announced and have not read back yet (one partition: it comes back)
        self._awaiting: dict[str, str] = {}

    def view(self, model_id: str) -> ModelView:
        return self.views.setdefault(model_id, ModelView(model_id))

    def on_update(self, update: AdapterUpdate) -> None:
        """A verified record of adapter-updates, in topic order."""
        view = self.view(update.model_id)
        view.apply(update)
        canary = view.canary
        if self._awaiting.get(update.model_id) == update.update_id:
            del self._awaiting[update.model_id]
        arms = self.arms.get(update.model_id)
        if canary is None:
            self.arms.pop(update.model_id, None)
        elif arms is None or arms.canary.version != canary.version:
            self.arms[update.model_id] = Arms(canary, view.live_version)

    def on_example(self, example: TrainingExample) -> None:
        arms = self.arms.get(example.model_id)
        if arms is None or example.example_id in arms.seen:
            return
        prediction = example.prediction
        if prediction.adapter_version == arms.canary.version:
            arm = arms.candidate
        elif prediction.adapter_version == arms.live_version and prediction.created_at >= arms.canary.created_at:
            arm = arms.live
        else:
            return
        arms.seen.add(example.example_id)
        arm.add(example.reward.reward)

    def due(self) -> list[AdapterUpdate]:
        """Updates to announce now (unsigned; the caller signs and publishes them)."""
        out: list[AdapterUpdate] = []
        for model_id, view in self.views.items():
            if model_id in self._awaiting:
                continue
            if view.canary is None and view.proposal is not None:
                out.append(self._start(view.proposal))
                self._awaiting[model_id] = out[-1].update_id
                continue
            arms = self.arms.get(model_id)
            if arms is None:
                continue
            look = look_index(arms.candidate.n, self.params)
            if look <= arms.looked:
                continue
            arms.looked = look
            verdict = decide(arms.candidate, arms.live, self.params)
            arms.verdict = verdict
            if verdict.outcome is not None:
                out.append(self.verdict_update(view, arms, verdict))
                self._awaiting[model_id] = out[-1].update_id
        return out

    @staticmethod
    def _start(proposal: AdapterUpdate) -> AdapterUpdate:
        data = proposal.model_dump()
        data.update(stage="canary", update_id=new_id(), created_at=utcnow(), signature=None)
        return AdapterUpdate.model_validate(data)

    def verdict_update(
        self, view: ModelView, arms: Arms, verdict: Verdict, *, decided_by: str = "gate"
    ) -> AdapterUpdate:
        """The live-stage record announcing ``verdict`` about ``arms.canary``."""
        assert verdict.outcome is not None
        p = self.params
        decision = GateDecision.model_validate(
            {
                "outcome": verdict.outcome,
                "candidate_version": arms.canary.version,
                "live_version": view.live_version,
                "decided_by": decided_by,
                "candidate_rewards": arms.candidate.n,
                "candidate_mean": arms.candidate.mean if arms.candidate.n else None,
                "live_rewards": arms.live.n,
                "live_mean": arms.live.mean if arms.live.n else None,
                "diff_low": _finite(verdict.low),
                "diff_high": _finite(verdict.high),
                "margin": p.margin,
                "confidence": p.confidence,
                "reason": verdict.reason[:1024],
            }
        )
        return decision_update(view, arms.canary, decision)


def decision_update(view: ModelView, candidate: AdapterUpdate, decision: GateDecision) -> AdapterUpdate:
    """Promotion: ``candidate`` announced live. Otherwise: the live version re-announced as a rollback."""
    if decision.outcome == "promote":
        data = candidate.model_dump()
        data.update(stage="live", rollback=False)
    elif view.live is not None:
        data = view.live.model_dump()
        data.update(rollback=True)
    else:
        data = {"model_id": view.model_id, "version": 0, "base_model": candidate.base_model, "rollback": True}
    data.update(update_id=new_id(), created_at=utcnow(), signature=None, decision=decision.model_dump())
    return AdapterUpdate.model_validate(data)
