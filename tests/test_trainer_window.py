"""Windows, committable offsets, version bookkeeping and token sequences (no services)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.events import AdapterUpdate, AssistantTurn, Message, PredictionEvent, RewardEvent, TrainingExample
from trainer.announce import Announced
from trainer.versions import PARENT_OFFSET, ModelState, needs_announcing
from trainer.window import OffsetTracker, Record, Windows


def _example(model_id: str = "m", content: str = "5") -> TrainingExample:
    p = PredictionEvent(
        model_id=model_id,
        base_model="b",
        messages=[Message(role="user", content="2+3?"), Message(role="assistant", content=content)],
    )
    r = RewardEvent(prediction_id=p.prediction_id, model_id=model_id, reward=1.0)
    return TrainingExample.join(p, r)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_window_closes_on_count() -> None:
    w = Windows(max_examples=3, max_seconds=60, clock=Clock())
    assert w.add(_example(), Record("t", 0, 10)) is None
    assert w.add(_example(), Record("t", 0, 12)) is None
    full = w.add(_example(), Record("t", 0, 15))
    assert full is not None and len(full.examples) == 3 and len(w) == 0
    tw = full.training_window()
    assert tw.example_count == 3
    assert [(r.partition, r.first_offset, r.last_offset) for r in tw.ranges] == [(0, 10, 15)]


def test_window_closes_on_time_after_its_first_example() -> None:
    clock = Clock()
    w = Windows(max_examples=100, max_seconds=60, clock=clock)
    w.add(_example("a"), Record("t", 0, 1))
    clock.t = 30
    w.add(_example("b"), Record("t", 1, 1))
    clock.t = 59.9
    assert w.due() == []
    clock.t = 60
    due = w.due()
    assert [x.model_id for x in due] == ["a"] and len(w) == 1
    clock.t = 90
    assert [x.model_id for x in w.due()] == ["b"]


def test_windows_are_per_model_and_know_their_ids() -> None:
    w = Windows(max_examples=2, max_seconds=60, clock=Clock())
    ex = _example("a")
    w.add(ex, Record("t", 0, 1))
    w.add(_example("b"), Record("t", 0, 2))
    assert w.contains("a", ex.example_id) and not w.contains("b", ex.example_id)
    assert w.add(_example("a"), Record("t", 0, 3)) is not None


def test_offsets_commit_only_below_open_windows() -> None:
    w = Windows(max_examples=10, max_seconds=60, clock=Clock())
    t = OffsetTracker()
    for off, model in [(0, "a"), (1, "b"), (2, "a")]:
        rec = Record("t", 0, off)
        t.seen(rec)
        w.add(_example(model), rec)
    t.seen(Record("t", 1, 7))  # a skipped example on another partition
    assert t.committable(w.records()) == {("t", 0): 0, ("t", 1): 8}
    t.committed({("t", 0): 0, ("t", 1): 8})
    assert t.committable(w.records()) == {}
    w.drop([("t", 0)])
    assert t.committable(w.records()) == {("t", 0): 3}


def test_revoked_partitions_drop_their_windows() -> None:
    w = Windows(max_examples=10, max_seconds=60, clock=Clock())
    w.add(_example("a"), Record("t", 0, 1))
    w.add(_example("b"), Record("t", 1, 1))
    assert [x.model_id for x in w.drop([("t", 1)])] == ["b"] and len(w) == 1


def _update(version: int, **kw) -> AdapterUpdate:
    files = {"adapter_config.json": "0" * 64, "adapter_model.safetensors": "1" * 64} if version else {}
    uri = f"s3://b/adapters/m/v{version}/" if version else None
    return AdapterUpdate(model_id="m", version=version, uri=uri, files=files, base_model="b", **kw)


def _at(update: AdapterUpdate, offset: int) -> Announced:
    return Announced(update, 0, offset)


def test_needs_announcing() -> None:
    newest = _update(3, parent_version=2, metrics={PARENT_OFFSET: 7.0})
    assert needs_announcing(newest, None)
    assert not needs_announcing(newest, _at(newest, 9))
    parent = _update(2, parent_version=1)
    assert needs_announcing(newest, _at(parent, 7))  # died between the manifest and the announcement
    rollback = _update(1, rollback=True)
    assert not needs_announcing(newest, _at(rollback, 8))  # an operator's rollback stands
    assert not needs_announcing(newest, _at(_update(3, rollback=True), 8))  # v3 itself announced again


def test_needs_announcing_ignores_clock_skew() -> None:
    """Order comes from versions and topic offsets: created_at values of skewed hosts change nothing."""
    now = _update(0).created_at
    for skew in (timedelta(hours=-3), timedelta(0), timedelta(hours=3)):
        # trained on top of a rollback to v1 (offset 4); its host's clock runs `skew` off
        newest = _update(3, parent_version=1, metrics={PARENT_OFFSET: 4.0}, created_at=now + skew)
        base = _update(1, rollback=True, created_at=now - skew)
        assert needs_announcing(newest, _at(base, 4)), skew  # its own parent: never announced
        # a rollback to that same v1 made after v3 was announced (offset 6): it stands
        again = _update(1, rollback=True, created_at=now - 2 * skew - timedelta(minutes=1))
        assert not needs_announcing(newest, _at(again, 6)), skew
        # an operator's rollback stamped long "before" the manifest by a slow clock still stands
        late = _update(2, rollback=True, created_at=now - timedelta(days=1))
        assert not needs_announcing(newest, _at(late, 5)), skew
    # a manifest of an older trainer (no offset): announced unless the latest is a rollback
    legacy = _update(3, parent_version=2, created_at=now - timedelta(days=1))
    assert needs_announcing(legacy, _at(_update(2, created_at=now + timedelta(days=1)), 3))
    assert not needs_announcing(legacy, _at(_update(2, rollback=True, created_at=now - timedelta(days=2)), 3))


def test_next_version_never_reuses_a_number() -> None:
    assert ModelState("m").next_version(None) == 1
    assert ModelState("m", head=4).next_version(_update(2, rollback=True)) == 5
    assert ModelState("m", head=0).next_version(_update(3)) == 4


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from devstack import StackSettings
    from devstack.checkpoint import checkpoint_dir

    path = checkpoint_dir(StackSettings().cache_dir)
    if not (path / "tokenizer.json").exists():
        pytest.skip("the stack's checkpoint is not converted yet")
    return AutoTokenizer.from_pretrained(path)


def test_sequences_from_the_chat_template_and_from_recorded_tokens(tokenizer) -> None:
    import torch

    from trainer.batch import build_sequences, collate

    plain = _example(content="The answer is 5.")
    ids = tokenizer("5<|im_end|>", add_special_tokens=False)["input_ids"]
    p = PredictionEvent(
        model_id="m",
        base_model="b",
        messages=[Message(role="user", content="2+3?"), Message(role="assistant", content="5")],
        turns=[AssistantTurn(message_index=1, completion_token_ids=ids, completion_logprobs=[-0.1] * len(ids))],
    )
    recorded = TrainingExample.join(p, RewardEvent(prediction_id=p.prediction_id, model_id="m", reward=0.0))
    seqs = build_sequences([plain, recorded], tokenizer, max_seq_len=512)
    assert len(seqs) == 2
    start0, start1 = seqs[0].targets[0], seqs[1].targets[0]
    text = tokenizer.decode(seqs[0].input_ids[start0:])
    assert text.startswith("The answer is 5.<|im_end|>")
    assert seqs[0].sampler_logprobs == [None] * seqs[0].completion_len
    assert seqs[1].input_ids[start1:] == ids and seqs[1].sampler_logprobs == [-0.1] * len(ids)
    # both share the prompt: the chat-templated user message with the generation prompt
    assert seqs[0].input_ids[:start0] == seqs[1].input_ids[:start1]
    assert tokenizer.decode(seqs[1].input_ids[:start1]).endswith("<|im_start|>assistant\n")

    mb = collate(seqs, tokenizer.pad_token_id, torch.device("cpu"))
    assert len(mb.next_ids) == len(mb.target_index) == sum(s.completion_len for s in seqs)
    assert sorted(mb.has_sampler.tolist()) == sorted([False] * seqs[0].completion_len + [True] * len(ids))
    # the shared prompt is computed once; right padding after each row's own suffix
    p_len = int(mb.prefix_ids.numel())
    assert 8 <= p_len < start0 and mb.computed_tokens == p_len + 2 * max(len(s.input_ids) - p_len for s in seqs)
    assert mb.tokens == sum(len(s.input_ids) for s in seqs)
    flat = mb.input_ids.reshape(-1)
    # the token at each target index's next position is the completion token it predicts
    width = mb.input_ids.shape[1]
    for i, nxt in zip(mb.target_index.tolist(), mb.next_ids.tolist(), strict=True):
        b, pos = divmod(i, width)
        assert flat[b * width + pos + 1] == nxt

    cut = build_sequences([plain], tokenizer, max_seq_len=8)[0]
    assert len(cut.input_ids) == 8 and cut.input_ids[cut.targets[0] :] == seqs[0].input_ids[start0:][:7]


def test_a_trajectorys_turns_chain_into_one_sequence(tokenizer) -> None:
    from trainer.batch import build_sequences, pack
    from trainer.bench import synthetic_window

    window = synthetic_window(tokenizer, 4, steps=2)
    seqs = build_sequences(window, tokenizer, max_seq_len=2048)
    assert len(seqs) == 4  # one per trajectory, two target spans each
    for seq, ex in zip(seqs, window, strict=True):
        turns = ex.prediction.turns
        assert seq.completion_len == sum(len(t.completion_token_ids) for t in turns)
        first, second = turns[0].completion_token_ids, turns[1].completion_token_ids
        assert [seq.input_ids[t] for t in seq.targets] == first + second
        assert seq.sampler_logprobs == [*(turns[0].completion_logprobs or []), *(turns[1].completion_logprobs or [])]
    # too long to chain within max_seq_len: one sequence per turn
    short = min(len(s.input_ids) for s in seqs) - 1
    assert len(build_sequences(window, tokenizer, max_seq_len=short)) == 8
    # packing keeps each group within its token budget (a lone long sequence is a group of its own)
    groups = pack(seqs, max_tokens=2 * max(len(s.input_ids) for s in seqs), max_rows=16)
    assert sum(len(g) for g in groups) == 4 and len(groups) < 4  # the shared prefix lets 2+ rows fit
    assert [len(g) for g in pack(seqs, max_tokens=64, max_rows=16)] == [1, 1, 1, 1]
    three = pack(seqs, max_tokens=100_000, max_rows=3)
    assert max(len(g) for g in three) <= 3 and sum(len(g) for g in three) == 4


def test_packing_keeps_a_long_answer_from_padding_the_short_ones() -> None:
    from trainer.batch import TokenSeq, _cost, pack

    system = list(range(1000, 1180))  # a shared 180-token system prompt

    def seq(i: int, answer: int) -> TokenSeq:
        ids = [*system, 5000 + i, 5001 + i, *range(7000, 7000 + answer)]
        return TokenSeq(ids, list(range(182, len(ids))), [None] * answer, i)

    seqs = [seq(i, 160 if i % 5 == 0 else 30) for i in range(16)]
    groups = pack(seqs, max_tokens=4096, max_rows=16)
    assert sorted(s.example for g in groups for s in g) == list(range(16))
    packed = sum(_cost(g) for g in groups)
    assert packed < 0.6 * _cost(seqs)  # one group padded to the longest: 180 + 16 * 162
    for g in groups:  # short and long answers end up apart
        assert len({len(s.input_ids) for s in g}) == 1


def test_public_surface_and_no_torch_on_import() -> None:
    import subprocess
    import sys

    import trainer

    assert trainer.__all__ == ["TrainerSettings"]
    code = "import sys, trainer, trainer.cli, trainer.settings; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_settings_from_the_environment(monkeypatch) -> None:
    from trainer.settings import TrainerSettings

    monkeypatch.setenv("MC_TRAINER_WINDOW_EXAMPLES", "5")
    monkeypatch.setenv("MC_TRAINER_TARGET_MODULES", '["q_proj"]')
    monkeypatch.setenv("MC_TRAINER_KL_COEF", "0.1")
    s = TrainerSettings()
    assert (s.window_examples, s.target_modules, s.kl_coef, s.ratio_clip) == (5, ["q_proj"], 0.1, 4.0)
    with pytest.raises(Exception, match="frozen"):
        s.window_examples = 3  # type: ignore[misc]


def test_trained_ids_are_remembered_for_a_horizon_of_versions() -> None:
    """The set of trained example ids stays bounded: the newest ``horizon`` versions only."""
    from trainer.versions import ModelState

    state = ModelState("m", horizon=3)
    for version in range(1, 6):
        state.remember(version, [f"e{version}a", f"e{version}b"])
    assert [v for v, _ in state.recent] == [3, 4, 5]
    assert state.trained("e5a") and state.trained("e3b")
    assert not state.trained("e2a")  # re-read after 3 newer versions: trained again (at least once)
