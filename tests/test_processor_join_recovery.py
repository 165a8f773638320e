"""The join's pure logic under what Kafka and faust really do at crashes and rebalances (issue #11).

A model of one partition of both source topics, one prediction_id, several workers' histories:

* a worker reads the two topics in its own interleaving (in offset order within each topic);
* what it writes while processing a record (the state's changelog record, the examples) is
  attached to that record's topic-partition and published at the next commit, topic-partition by
  topic-partition (so the changelog's order is not the processing order), and only then are the
  offsets of both topic-partitions committed; a crash can fall between any two of these steps;
* a worker that loses the partition at a rebalance (rather than dying) may publish its pending
  attachments late, after the next owner has started, or never;
* the next owner starts from the committed offsets with the changelog (all of it: recovery reads to
  the end) and the local store of the disk it runs on (its own from an earlier ownership, or empty).

The property: every reward's example is published at least once. The same model with the old
worker (recovery keeps the last changelog record; a replay does not write the state) must lose
examples, so the model finds the bug the fix removes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from schemas import Message, PredictionEvent, RewardEvent, encode
from stream_processors.codec import decode_join_state, encode_join_state
from stream_processors.join import JoinState, Record, on_prediction, on_reward

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Kind = Literal["P", "R"]


def _events(n: int, dups: list[int]) -> tuple[list[PredictionEvent], list[RewardEvent]]:
    p = PredictionEvent(model_id="m", base_model="b", created_at=T0, messages=[Message(role="user", content="q")])
    rewards = [
        RewardEvent(reward_id=f"r{i}", prediction_id=p.prediction_id, model_id="m", reward=i / 10, created_at=T0)
        for i in range(n)
    ]
    return [p], rewards + [rewards[i] for i in dups]


@dataclass
class World:
    """Kafka (the two topics, committed offsets, the changelog, the examples topic) and the disks."""

    topics: dict[Kind, list[PredictionEvent | RewardEvent]]
    committed: dict[Kind, int] = field(default_factory=lambda: {"P": 0, "R": 0})
    changelog: list[bytes] = field(default_factory=list)
    examples: set[str] = field(default_factory=set)
    disks: dict[str, bytes | None] = field(default_factory=dict)
    #: a revoked worker's attachments that it may still publish: (topic-partition, kind, payload)
    stranded: list[tuple[Kind, str, bytes | str]] = field(default_factory=list)


def _recover(world: World, local: bytes | None, *, merge: bool) -> JoinState | None:
    state = decode_join_state(local) if local is not None else None
    for raw in world.changelog:
        incoming = decode_join_state(raw)
        state = state.merge(incoming) if merge and state is not None else incoming
    return state


def _history(world: World, data: st.DataObject, *, fixed: bool, last: bool) -> None:
    """One owner of the partition, from recovery to its crash, its revocation, or the end."""
    disk = data.draw(st.sampled_from(["a", "b", "new"]))
    local = world.disks.get(disk)
    state = _recover(world, None if fixed else local, merge=fixed)
    pos = dict(world.committed)
    attached: dict[Kind, list[tuple[str, bytes | str]]] = {"P": [], "R": []}

    def publish(kind: str, payload: bytes | str) -> None:
        if kind == "cl":
            assert isinstance(payload, bytes)
            world.changelog.append(payload)
        else:
            assert isinstance(payload, str)
            world.examples.add(payload)

    def commit(crash_midway: bool) -> bool:
        order: list[Kind] = data.draw(st.permutations(["P", "R"]))
        for tp in order:
            for kind, payload in attached[tp]:
                publish(kind, payload)
            attached[tp].clear()
            if crash_midway and data.draw(st.booleans()):
                return False
        world.committed.update(pos)
        return True

    while True:
        late = bool(world.stranded) and data.draw(st.booleans())
        if late:  # the previous owner's late publication
            _tp, kind, payload = world.stranded.pop(0)
            publish(kind, payload)
        left: list[Kind] = [k for k in ("P", "R") if pos[k] < len(world.topics[k])]
        if not left:
            commit(crash_midway=False)
            return
        action = data.draw(st.sampled_from(["record", "record", "record", "commit", "end"]))
        if action == "commit":
            if not commit(crash_midway=not last):
                break  # crashed between publishing and committing
            continue
        if action == "end" and not last:
            break
        tp: Kind = data.draw(st.sampled_from(left))
        ev = world.topics[tp][pos[tp]]
        rec = Record(tp, 0, pos[tp], int(ev.created_at.timestamp() * 1000), encode(ev))
        out = on_prediction(state, rec, ev) if isinstance(ev, PredictionEvent) else on_reward(state, rec, ev)
        replay = any(e.replay for e in out.emits) or "replayed" in out.counts
        if out.changed and (fixed or not replay):
            state = out.state
            attached[tp].append(("cl", encode_join_state(state)))
        for e in out.emits:
            attached[tp].append(("ex", e.example_id))
        pos[tp] += 1
    # The history ends without its last commit: killed (its attachments are gone) or revoked (they
    # may be published late, during the next owner's history, or never).
    if data.draw(st.booleans()):
        world.stranded += [(tp, kind, payload) for tp in ("P", "R") for kind, payload in attached[tp]]
    if disk != "new":
        world.disks[disk] = encode_join_state(state) if state is not None else None


def _loses(data: st.DataObject, *, fixed: bool) -> bool:
    n = data.draw(st.integers(1, 3))
    dups = data.draw(st.lists(st.integers(0, n - 1), max_size=2))
    preds, rewards = _events(n, dups)
    world = World(topics={"P": list(preds), "R": list(rewards)})
    for _ in range(data.draw(st.integers(1, 4))):
        _history(world, data, fixed=fixed, last=False)
    _history(world, data, fixed=fixed, last=True)
    return world.examples != {r.reward_id for r in rewards}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_no_example_is_lost_across_crashes_rebalances_and_changelog_reordering(data: st.DataObject) -> None:
    assert not _loses(data, fixed=True)


def test_the_model_finds_the_loss_of_the_old_worker() -> None:
    """Last-write-wins recovery and replays that do not rewrite the state lose examples in this model."""
    find(
        st.data(),
        lambda data: _loses(data, fixed=False),
        settings=settings(max_examples=5000, deadline=None, database=None),
    )


def test_merge_is_order_independent() -> None:
    preds, rewards = _events(2, [])
    p, (r0, r1) = preds[0], rewards
    s0 = on_reward(None, Record("R", 0, 0, 0, encode(r0)), r0).state  # r0 waits
    s1 = decode_join_state(encode_join_state(s0))
    s1 = on_prediction(s1, Record("P", 0, 0, 0, encode(p)), p).state  # r0 done (triggered by P@0)
    s2 = decode_join_state(encode_join_state(s1))
    s2 = on_reward(s2, Record("R", 0, 1, 0, encode(r1)), r1).state  # r1 done (R@1)
    newest = encode_join_state(s2)
    for order in ([s2, s0, s1], [s0, s2, s1], [s1, s0, s2]):
        merged = order[0]
        for s in order[1:]:
            merged = merged.merge(s)
        assert encode_join_state(merged) == newest


def test_merged_triggers_make_every_history_s_replay_reemit() -> None:
    """One history emitted r0 when the prediction came, another when the reward came: both replay."""
    preds, rewards = _events(1, [])
    p, r0 = preds[0], rewards[0]
    first = on_prediction(
        on_reward(None, Record("R", 0, 0, 0, encode(r0)), r0).state, Record("P", 0, 0, 0, encode(p)), p
    ).state
    second = on_reward(
        on_prediction(None, Record("P", 0, 0, 0, encode(p)), p).state, Record("R", 0, 0, 0, encode(r0)), r0
    ).state
    merged = decode_join_state(encode_join_state(first.merge(second)))
    assert [e.example_id for e in on_reward(merged, Record("R", 0, 0, 0, encode(r0)), r0).emits] == ["r0"]
    assert [e.example_id for e in on_prediction(merged, Record("P", 0, 0, 0, encode(p)), p).emits] == ["r0"]
