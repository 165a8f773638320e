"""The join changelog's codec: round trip, records written before the format had a version, and an
unknown version refused (``stream_processors/codec.py``)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.errors import SchemaError, UnsupportedFormatVersionError
from stream_processors.codec import FORMAT_VERSION, decode_join_state, encode_join_state, merge_join_states
from stream_processors.join import Done, JoinState, Pending

rids = st.from_regex(r"\A[a-f0-9]{1,12}\Z")
kinds = st.sampled_from(["P", "R"])
offsets = st.integers(0, 2**40)
texts = st.text(max_size=40)
pendings = st.builds(Pending, offsets, offsets, texts)
dones = st.builds(Done, kinds, offsets, st.none() | texts, st.lists(st.tuples(kinds, offsets), max_size=3).map(sorted))


@st.composite
def states(draw: st.DrawFn) -> JoinState:
    has_prediction = draw(st.booleans())
    return JoinState(
        partition=draw(st.integers(0, 63)),
        last_ms=draw(offsets),
        prediction=draw(st.binary(max_size=60)) if has_prediction else None,
        pred_offset=draw(offsets) if has_prediction else None,
        pred_model=draw(texts) if has_prediction else None,
        pred_adapter=draw(st.integers(0, 99)),
        pred_created=draw(texts) if has_prediction else None,
        pending=draw(st.dictionaries(rids, pendings, max_size=3)),
        done=draw(st.dictionaries(rids, dones, max_size=3)),
    )


def _legacy(state: JoinState) -> bytes:
    """What workers wrote before the format had a version (the old ``JoinState.to_bytes``), verbatim."""
    meta = {
        "p": state.partition,
        "t": state.last_ms,
        "po": state.pred_offset,
        "pm": state.pred_model,
        "pa": state.pred_adapter,
        "pc": state.pred_created,
        "pend": {rid: [x.offset, x.time_ms, x.text] for rid, x in state.pending.items()},
        "done": {rid: [x.kind, x.offset, x.text, *([x.also] if x.also else [])] for rid, x in state.done.items()},
    }
    return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + (state.prediction or b"")


@given(states())
def test_round_trip(state: JoinState) -> None:
    data = encode_join_state(state)
    assert decode_join_state(data) == state
    assert json.loads(data.partition(b"\n")[0])["v"] == FORMAT_VERSION


@given(states())
def test_records_without_a_version_are_version_1(state: JoinState) -> None:
    old = _legacy(state)
    assert decode_join_state(old) == state
    # the same layout but for the version marker: nothing else of the format moved (the JSON line may
    # escape characters differently: any JSON encoder's output decodes the same)
    new_head, _, new_body = encode_join_state(state).partition(b"\n")
    old_head, _, old_body = old.partition(b"\n")
    assert json.loads(new_head) == {"v": 1, **json.loads(old_head)}
    assert list(json.loads(new_head)) == ["v", *json.loads(old_head)]
    assert new_body == old_body


@given(states(), states())
def test_merge_reads_old_and_new_records_alike(a: JoinState, b: JoinState) -> None:
    b.partition = a.partition
    expected = encode_join_state(a.merge(b))
    assert merge_join_states(_legacy(a), encode_join_state(b)) == expected


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_unknown_version_is_refused(version: object) -> None:
    data = encode_join_state(JoinState(partition=0, last_ms=1))
    head, _, body = data.partition(b"\n")
    meta = json.loads(head)
    meta["v"] = version
    bad = json.dumps(meta).encode() + b"\n" + body
    with pytest.raises(UnsupportedFormatVersionError) as info:
        decode_join_state(bad)
    assert isinstance(info.value, SchemaError) and info.value.raw == bad
    assert info.value.reason == "unsupported_format_version"
