"""The canary in pure logic: the contract's new fields, the shared state rules (schemas.canary), the gate's
core without Kafka, the node's routing and the trainer's announcement (issue #14)."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gate.core import GateCore
from gate.decide import GateParams
from inference.proxy import route_key
from inference.registry import AdapterRegistry, Serving, routes_to_canary
from schemas.canary import ModelView, canary_enabled_for
from schemas.errors import UntrustedAdapterError
from schemas.events import (
    AdapterUpdate,
    GateDecision,
    Message,
    PredictionEvent,
    RewardEvent,
    TrainingExample,
    utcnow,
)
from schemas.serde import decode, encode
from schemas.signing import sign_update, verify_update
from schemas.storage import adapter_uri

KEY = b"k" * 32
SHA = "a" * 64
M = "shop"


def _v(version: int, **kw: Any) -> AdapterUpdate:
    if version == 0:
        return AdapterUpdate(model_id=M, version=0, base_model="b", **kw)
    files = {"adapter_config.json": SHA, "adapter_model.safetensors": SHA}
    return AdapterUpdate(
        model_id=M, version=version, uri=adapter_uri("mc-adapters", M, version), files=files, base_model="b", **kw
    )


def _decision(outcome: str, candidate: int, live: int) -> GateDecision:
    return GateDecision(outcome=outcome, candidate_version=candidate, live_version=live)


# -- the contract ---------------------------------------------------------------------------------------


def test_a_live_update_encodes_and_signs_as_before_the_canary() -> None:
    live = sign_update(_v(3), KEY)
    body = json.loads(encode(live))
    assert "stage" not in body and "decision" not in body
    # An update written before the fields existed reads as live and its signature still holds.
    old = decode(encode(live), AdapterUpdate)
    assert old.stage == "live" and old.decision is None and old.record_key == M
    verify_update(old, KEY, "mc-adapters")


def test_stage_and_decision_are_signed_and_keyed_apart() -> None:
    cand = sign_update(_v(4, stage="candidate"), KEY)
    assert json.loads(encode(cand))["stage"] == "candidate" and cand.record_key == f"{M}/candidate"
    verify_update(decode(encode(cand), AdapterUpdate), KEY, "mc-adapters")
    with pytest.raises(UntrustedAdapterError):  # a candidate made live by someone without the key
        verify_update(cand.model_copy(update={"stage": "live"}), KEY, "mc-adapters")
    refusal = sign_update(_v(3, rollback=True, decision=_decision("refuse", 4, 3)), KEY)
    with pytest.raises(UntrustedAdapterError):
        verify_update(refusal.model_copy(update={"decision": _decision("promote", 4, 3)}), KEY, "mc-adapters")
    assert _v(4, stage="canary").record_key == f"{M}/canary"


@pytest.mark.parametrize(
    "bad",
    [
        {"stage": "candidate", "rollback": True},
        {"stage": "canary", "decision": _decision("promote", 4, 3)},
        {"decision": _decision("promote", 5, 3)},  # a promotion announces the candidate's own version
        {"decision": _decision("refuse", 4, 3)},  # a refusal is a rollback to live
        {"rollback": True, "decision": _decision("refuse", 4, 2)},
    ],
)
def test_inconsistent_canary_updates_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _v(4 if "rollback" not in bad else 3, **bad)


def test_per_model_override_of_the_canary_switch() -> None:
    assert not canary_enabled_for("a", False, {})
    assert canary_enabled_for("a", False, {"a": True})
    assert not canary_enabled_for("a", True, {"a": False})
    assert canary_enabled_for("b", True, {"a": False})


# -- the shared rules -------------------------------------------------------------------------------------


def test_a_refused_canary_ends_and_never_comes_back() -> None:
    view = ModelView(M)
    for u in (_v(1), _v(2, stage="candidate"), _v(2, stage="canary"), _v(3, stage="candidate")):
        view.apply(u)
    assert view.canary is not None and view.canary.version == 2 and view.proposal is not None
    first = view.canary
    view.apply(_v(2, stage="canary"))  # announced twice: the running one stays
    assert view.canary is first
    view.apply(_v(1, rollback=True, decision=_decision("refuse", 2, 1)))
    assert view.canary is None and view.proposal is None and view.live_version == 1 and view.ended == {2}
    view.apply(_v(2, stage="canary"))  # a re-delivery of the old start
    view.apply(_v(2, stage="candidate"))
    assert view.canary is None and view.proposal is None


def test_a_promotion_ends_the_canary_and_keeps_newer_proposals() -> None:
    view = ModelView(M)
    for u in (_v(1), _v(2, stage="candidate"), _v(2, stage="canary"), _v(3, stage="candidate")):
        view.apply(u)
    view.apply(_v(2, decision=_decision("promote", 2, 1)))
    assert view.live_version == 2 and view.canary is None
    assert view.proposal is not None and view.proposal.version == 3


def _protocol() -> st.SearchStrategy[list[AdapterUpdate]]:
    """Sequences of records the trainer, the gate and people write, following the protocol."""
    actions = st.lists(st.sampled_from(["propose", "start", "promote", "refuse", "give_up", "person"]), max_size=30)

    def build(steps: list[str]) -> list[AdapterUpdate]:
        view, out, version = ModelView(M), [_v(1)], 1
        view.apply(out[0])
        for step in steps:
            u: AdapterUpdate | None = None
            if step == "propose":
                version += 1
                u = _v(version, stage="candidate")
            elif step == "start" and view.canary is None and view.proposal is not None:
                u = _v(view.proposal.version, stage="canary")
            elif step == "promote" and view.canary is not None:
                u = _v(view.canary.version, decision=_decision("promote", view.canary.version, view.live_version))
            elif step in ("refuse", "give_up") and view.canary is not None:
                outcome = "refuse" if step == "refuse" else "inconclusive"
                d = _decision(outcome, view.canary.version, view.live_version)
                u = _v(view.live_version, rollback=True, decision=d)
            elif step == "person":
                u = _v(max(view.live_version - 1, 0), rollback=True)
            if u is not None:
                out.append(u)
                view.apply(u)
        return out

    return actions.map(build)


def _state(records: list[AdapterUpdate]) -> tuple[int, int | None, int | None]:
    view = ModelView(M)
    for u in records:
        view.apply(u)
        assert view.canary is None or (
            view.canary.version > view.live_version and view.canary.version not in view.ended
        )
    return (
        view.live_version,
        view.canary.version if view.canary else None,
        view.proposal.version if view.proposal else None,
    )


@settings(max_examples=300, deadline=None)
@given(_protocol())
def test_a_late_reader_of_the_compacted_topic_reaches_the_same_state(records: list[AdapterUpdate]) -> None:
    last = {u.record_key: i for i, u in enumerate(records)}  # compaction: the last record per key, in order
    compacted = [u for i, u in enumerate(records) if last[u.record_key] == i]
    assert _state(compacted) == _state(records)


# -- the gate without Kafka --------------------------------------------------------------------------------


def _example(version: int, reward: float, *, created: Any = None, example_id: str | None = None) -> TrainingExample:
    p = PredictionEvent(
        model_id=M,
        base_model="b",
        adapter_version=version,
        messages=[Message(role="user", content="q")],
        created_at=created or utcnow(),
    )
    r = RewardEvent(
        model_id=M, prediction_id=p.prediction_id, reward=reward, **({"reward_id": example_id} if example_id else {})
    )
    return TrainingExample.join(p, r)


def _gate_with_canary() -> tuple[GateCore, AdapterUpdate]:
    core = GateCore(GateParams(min_rewards=10, check_every=5, max_rewards=100))
    core.on_update(_v(1))
    core.on_update(_v(2, stage="candidate"))
    (start,) = core.due()
    assert start.stage == "canary" and start.version == 2 and start.record_key == f"{M}/canary"
    assert core.due() == []  # not twice while waiting to read it back
    core.on_update(start)
    return core, start


def test_the_gate_waits_for_its_own_record_even_when_the_topic_ignores_it() -> None:
    core = GateCore(GateParams(min_rewards=10, check_every=5, max_rewards=100))
    core.on_update(_v(1))
    core.on_update(_v(2, stage="candidate"))
    (start,) = core.due()
    core.on_update(_v(3, stage="candidate"))  # a newer proposal comes before our record: still waiting
    assert core.due() == []
    core.on_update(_v(2, decision=_decision("promote", 2, 1)))  # a person promotes v2 first
    core.on_update(start)  # our start of v2 comes back, stale: the view ignores it, the gate goes on
    (again,) = core.due()
    assert again.stage == "canary" and again.version == 3


def test_the_gate_refuses_a_candidate_whose_answers_are_rewarded_low() -> None:
    core, start = _gate_with_canary()
    old = start.created_at - timedelta(minutes=5)
    for _ in range(30):
        core.on_example(_example(1, 0.0, created=old))  # live traffic from before the canary: not compared
    for i in range(10):
        core.on_example(_example(2, 0.0))
        core.on_example(_example(1, 1.0))
        core.on_example(_example(1, float(i % 2)))
    (verdict,) = core.due()
    d = verdict.decision
    assert d is not None and d.outcome == "refuse" and d.candidate_version == 2 and d.live_version == 1
    assert verdict.rollback and verdict.version == 1 and verdict.record_key == M
    assert d.candidate_rewards == 10 and d.live_rewards == 20 and d.live_mean == 0.75
    core.on_update(verdict)
    assert core.views[M].canary is None and core.arms == {} and core.due() == []


def test_the_gate_promotes_a_good_candidate_and_counts_each_example_once() -> None:
    core, _ = _gate_with_canary()
    for i in range(40):
        ex = _example(2, 1.0, example_id=f"same-{i % 20}")  # each one delivered twice
        core.on_example(ex)
        core.on_example(_example(1, float(i % 2)))
    assert core.arms[M].candidate.n == 20
    (verdict,) = core.due()
    assert verdict.decision is not None and verdict.decision.outcome == "promote"
    assert verdict.version == 2 and verdict.stage == "live" and not verdict.rollback


# -- the node's routing --------------------------------------------------------------------------------


def test_routing_sends_a_stable_share_to_the_canary() -> None:
    keys = [f"prompt {i}".encode() for i in range(4000)]
    share = sum(routes_to_canary(k, 7, 0.2) for k in keys) / len(keys)
    assert 0.17 < share < 0.23
    assert not any(routes_to_canary(k, 7, 0.0) for k in keys) and all(routes_to_canary(k, 7, 1.0) for k in keys)
    reg = AdapterRegistry("base", canary_fraction=0.5)
    reg.switch(Serving(M, 1, f"{M}@v1", "/p1"))
    reg.start_canary(Serving(M, 2, f"{M}@v2", "/p2"))
    picks = {k: reg.resolve(M, k).version for k in keys[:200]}
    assert set(picks.values()) == {1, 2}
    assert all(reg.resolve(M, k).version == v for k, v in picks.items())  # the same key, the same version
    assert reg.is_referenced(f"{M}@v2") and reg.snapshot()[M].canary is not None
    reg.end_canary(M)
    assert {reg.resolve(M, k).version for k in keys[:200]} == {1}


def test_every_turn_of_one_agent_run_has_the_same_route_key() -> None:
    first = [{"role": "system", "content": "s"}, {"role": "user", "content": "2+2?"}]
    later = [*first, {"role": "assistant", "content": "```python\nprint(4)```"}, {"role": "user", "content": "4"}]
    assert route_key({"messages": first}) == route_key({"messages": later})
    assert route_key({"messages": first}) != route_key({"messages": [first[0], {"role": "user", "content": "3?"}]})


def test_the_openai_user_field_keys_the_route_when_set() -> None:
    """The SDK sends one id per agent run: runs whose heads are equal (few-shot turns) are told apart,
    and every turn of one run keeps its key."""
    few_shot = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "example question"},
        {"role": "assistant", "content": "example answer"},
    ]
    a = [*few_shot, {"role": "user", "content": "2+2?"}]
    b = [*few_shot, {"role": "user", "content": "3+5?"}]
    assert route_key({"messages": a}) == route_key({"messages": b})  # the fallback cannot tell them apart
    assert route_key({"messages": a, "user": "run-1"}) != route_key({"messages": b, "user": "run-2"})
    later = [*a, {"role": "assistant", "content": "x"}, {"role": "user", "content": "obs"}]
    assert route_key({"messages": a, "user": "run-1"}) == route_key({"messages": later, "user": "run-1"})
    shares = sum(routes_to_canary(route_key({"messages": a, "user": f"run-{i}"}), 3, 0.2) for i in range(2000))
    assert 300 < shares < 500  # ~20% of runs, though every run has the same head


# -- the trainer's side ------------------------------------------------------------------------------------


def _announced(enabled: bool, models: dict[str, bool], update: AdapterUpdate) -> AdapterUpdate:
    from trainer.publish import AdapterPublisher

    sent: list[AdapterUpdate] = []

    class Events:
        def publish(self, topic: Any, event: AdapterUpdate) -> Any:
            sent.append(event)
            return SimpleNamespace(result=lambda _t: SimpleNamespace(partition=0, offset=len(sent)))

    settings = SimpleNamespace(
        canary_enabled=enabled, canary_models=models, signing_key=lambda: KEY, publish_timeout_s=1.0
    )
    view = SimpleNamespace(record=lambda *a: None)
    AdapterPublisher(settings, None, view, Events()).announce(update)  # type: ignore[arg-type]
    return sent[0]


def test_the_trainer_announces_new_versions_as_candidates_only_when_the_canary_is_on() -> None:
    assert _announced(False, {}, _v(3)).stage == "live"  # the default: as today
    assert _announced(True, {}, _v(3)).stage == "candidate"
    assert _announced(False, {M: True}, _v(3)).stage == "candidate"
    assert _announced(True, {M: False}, _v(3)).stage == "live"
    assert _announced(True, {}, _v(2, rollback=True)).stage == "live"  # a rollback is never a candidate


def test_the_trainer_continues_from_its_newest_version_unless_rolled_back() -> None:
    from trainer.announce import Announcements

    view = Announcements.__new__(Announcements)  # the bookkeeping only; no consumer
    view._latest = {}
    records = [
        _v(1),
        _v(2, stage="candidate"),
        _v(2, stage="canary"),
        _v(3, stage="candidate"),
        _v(2, decision=_decision("promote", 2, 1)),
    ]
    for offset, u in enumerate(records):
        view.record(u, 0, offset)
    latest = view.latest(M)
    assert latest is not None and latest.version == 3  # the gate's copy and an older promotion don't move it
    view.record(_v(2, rollback=True, decision=_decision("refuse", 3, 2)), 0, 9)
    latest = view.latest(M)
    assert latest is not None and latest.version == 2  # a refusal does: back to the live version


# -- the dashboard --------------------------------------------------------------------------------------


def test_the_dashboard_shows_candidate_against_live_and_whether_nodes_agree() -> None:
    from dashboard.collector import _canaries

    decision = _decision("refuse", 2, 1).model_dump(mode="json")
    canary = {"version": 3, "adapter": f"{M}@v3", "since": 0.0, "fraction": 0.2, "requests": 4}
    nodes = [
        {"node_id": "a", "live": {M: 1}, "canary": {M: canary}, "decisions": {M: decision}},
        {"node_id": "b", "live": {M: 1}, "canary": {}, "decisions": {M: decision}},  # has not read the start yet
    ]
    rewards = [
        {"model_id": M, "adapter_version": 1, "count": 40, "mean": 0.75},
        {"model_id": M, "adapter_version": 3, "count": 5, "mean": 0.6},
    ]
    (row,) = _canaries(nodes, rewards)
    assert row["live_version"] == 1 and row["canary_version"] == 3 and row["fraction"] == 0.2
    assert (row["candidate_rewards"], row["candidate_mean"], row["live_rewards"], row["live_mean"]) == (
        5,
        0.6,
        40,
        0.75,
    )
    assert row["decision"]["outcome"] == "refuse" and not row["nodes_agree"]
    nodes[1]["canary"] = {M: canary}
    assert _canaries(nodes, rewards)[0]["nodes_agree"]


# -- the node's watcher, with a fake vLLM -----------------------------------------------------------------


def test_the_watcher_routes_ends_and_promotes_canaries_in_topic_order() -> None:
    import asyncio
    from pathlib import Path

    from inference.metrics import NodeMetrics
    from inference.settings import InferenceSettings
    from inference.watcher import AdapterWatcher

    settings = InferenceSettings(adapter_signing_key="s" * 32, unload_grace_s=0.0, canary_fraction=1.0)
    calls: list[tuple[str, str]] = []

    class Vllm:
        async def load(self, name: str, path: str) -> bool:
            calls.append(("load", name))
            return True

        async def unload(self, name: str) -> None:
            calls.append(("unload", name))

    def signed(version: int, **kw: Any) -> AdapterUpdate:
        if version == 0:
            return sign_update(AdapterUpdate(model_id=M, version=0, base_model="b", **kw), settings.signing_key())
        files = {"adapter_config.json": SHA, "adapter_model.safetensors": SHA}
        uri = adapter_uri(settings.s3_bucket, M, version)
        update = AdapterUpdate(model_id=M, version=version, uri=uri, files=files, base_model="b", **kw)
        return sign_update(update, settings.signing_key())

    async def scenario() -> None:
        registry = AdapterRegistry("base", canary_fraction=1.0)
        watcher = AdapterWatcher(settings, registry, Vllm(), NodeMetrics())  # type: ignore[arg-type]

        async def fetch(update: AdapterUpdate) -> Path:
            return Path(f"/adapters/v{update.version}")

        watcher._fetch = fetch  # type: ignore[method-assign]
        offset = iter(range(100))

        async def offer(update: AdapterUpdate) -> None:
            watcher._offer(update, next(offset))
            for _ in range(20):  # let the model's worker and any retirement run
                await asyncio.sleep(0.01)

        watcher.caught_up.set()
        await offer(signed(1))
        await offer(signed(2, stage="candidate"))
        assert registry.canary(M) is None and ("load", f"{M}@v2") not in calls  # a proposal is not served
        await offer(signed(2, stage="canary"))
        assert registry.resolve(M, b"any").version == 2  # fraction 1: every request
        watcher._offer(signed(1, rollback=True, decision=_decision("refuse", 2, 1)), next(offset))
        assert registry.resolve(M, b"any").version == 1  # at once, before anything is unloaded
        await offer(signed(2, stage="canary"))  # announced again after its refusal: ignored
        assert registry.canary(M) is None and ("unload", f"{M}@v2") in calls
        assert registry.snapshot()[M].refused == [2]

        await offer(signed(3, stage="canary"))
        assert registry.resolve(M, b"any").version == 3
        await offer(signed(3, decision=_decision("promote", 3, 1)))
        assert registry.live_version(M) == 3 and registry.canary(M) is None
        assert ("unload", f"{M}@v3") not in calls  # promoted: the loaded canary is the live one now
        await watcher.stop()

    asyncio.run(scenario())


def test_mc_adapters_status_prints_the_canary_and_the_last_decision(monkeypatch, capsys) -> None:
    import gate.admin
    from mc_cli.main import main

    report = {
        "model_id": M,
        "live": {"version": 1, "rollback": True},
        "canary": {"version": 3, "created_at": "2026-12-06T01:00:00+00:00", "candidate_rewards": 12,
                   "candidate_mean": 0.5, "live_rewards": 40, "live_mean": 0.55, "diff_low": -0.3, "diff_high": 0.2,
                   "reason": "[-0.3, +0.2] contains -0.1"},
        "proposal": {"version": 4, "created_at": "2026-12-06T01:01:00+00:00"},
        "ended": [2],
        "last_decision": _decision("refuse", 2, 1).model_dump(mode="json"),
    }  # fmt: skip
    monkeypatch.setattr(gate.admin, "status", lambda settings, model_id: report)
    assert main(["adapters", "status", M]) == 0
    out = capsys.readouterr().out
    assert "live v1 (rollback)" in out and "canary: v3" in out and "waiting: v4" in out
    assert "last decision: refuse v2 against live v1 by gate" in out and "never served again: v2" in out
    assert main(["adapters", "status", M, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report
