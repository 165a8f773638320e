"""What the adapter-updates topic says about one model's live version and canary (issue #14).

Nodes, the gate and ``mc adapters status`` read the same records in the same (single-partition) order
and apply the same rules here, so they agree on what is live, what is under canary and what was
refused, and a late reader that sees only the records compaction kept reaches the same state:

- ``candidate`` (a trainer's new version, key ``{model_id}/candidate``): a *proposal*. Nobody serves it.
  Only the newest proposal above the live version counts.
- ``canary`` (the gate's choice, key ``{model_id}/canary``): nodes route a share of the model's
  requests to it. Only the gate starts a canary, one at a time per model, so every node and the gate
  evaluate the same version however fast trainers propose.
- ``live`` (key ``model_id``): today's announcement. A newer version goes live and ends a canary of
  that version or older (a promotion is the canary's version announced live); a rollback (the gate's
  refusal or inconclusive verdict re-announces the live version with ``rollback=True``, or a person's
  ``mc adapters rollback``) ends any canary and drops the proposals made before it: they were
  trained on top of what was refused. A version the gate refused or gave up on is never a canary
  again.

Records arrive on one partition, so "before" and "after" are offsets, never clocks. Compaction keeps
the last record per key and their order, so replaying what is left gives the same state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.events import AdapterUpdate, GateDecision

__all__ = ["ModelView", "canary_enabled_for"]


def canary_enabled_for(model_id: str, enabled: bool, overrides: Mapping[str, bool]) -> bool:
    """Whether new versions of ``model_id`` start as candidates: the per-model override, else the default."""
    return overrides.get(model_id, enabled)


@dataclass
class ModelView:
    """One model's state as the topic describes it; :meth:`apply` each verified record in topic order."""

    model_id: str
    live: AdapterUpdate | None = None
    canary: AdapterUpdate | None = None
    proposal: AdapterUpdate | None = None
    #: versions whose canary ended without promotion: never served again
    ended: set[int] = field(default_factory=set)
    last_decision: GateDecision | None = None

    @property
    def live_version(self) -> int:
        return self.live.version if self.live is not None else 0

    def apply(self, update: AdapterUpdate) -> None:
        if update.model_id != self.model_id:
            raise ValueError(f"an update of {update.model_id} applied to {self.model_id}'s view")
        if update.stage == "candidate":
            newest = max(
                self.live_version,
                self.canary.version if self.canary is not None else 0,
                self.proposal.version if self.proposal is not None else 0,
            )
            if update.version > newest and update.version not in self.ended:
                self.proposal = update
            return
        if update.stage == "canary":
            if self.canary is not None and self.canary.version == update.version:
                return  # the same canary announced again: it keeps running (and loaded)
            if update.version > self.live_version and update.version not in self.ended:
                self.canary = update
                if self.proposal is not None and self.proposal.version <= update.version:
                    self.proposal = None
            return
        decision = update.decision
        if decision is not None:
            self.last_decision = decision
            if decision.outcome != "promote":
                self.ended.add(decision.candidate_version)
        if update.rollback:
            self.live, self.canary, self.proposal = update, None, None
            return
        if self.live is not None and update.version <= self.live.version:
            return  # stale: a re-delivery or an older announcement (as nodes have always ignored it)
        self.live = update
        if self.canary is not None and self.canary.version <= update.version:
            self.canary = None
        if self.proposal is not None and self.proposal.version <= update.version:
            self.proposal = None
