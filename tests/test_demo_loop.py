"""The live loop against a scripted SDK model and a simulated trainer + node (no stack, seconds).

The fake trainer takes a window of W rewards, 'trains' for T seconds and makes the next version
live; the fake model answers with the version live when the request started. This checks the
loop's own logic: overlap with training, the ``max_ahead`` bound, the attribution of each answer to
its version, the rows, the budget, the cancellation at the end, and the failure paths.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from pydantic import BaseModel

from demo.loop import LiveResults, run_live_loop
from demo.observe import LiveVersion
from demo.report import VersionRow
from demo.settings import DemoSettings
from demo.workload import Sample
from maximum_continual import MessageT, PredictionResponseT, PredictionResponseWithRewardT
from schemas.errors import StackError

W = 4


class Answer(BaseModel):
    answer: int


class CountingTask:
    """Prompts 0, 1, 2, ...; the reward is the answering version / 10 (so learning 'shows')."""

    name = "counting"
    final_answer_model = Answer
    max_steps = 1
    tools: Sequence[Any] = ()
    authorized_imports: Sequence[str] = ()

    def system_prompt(self) -> str:
        return "count"

    def prompts(self, seed: int) -> Iterator[int]:
        return itertools.count()

    def user_message(self, task: int) -> str:
        return str(task)

    def reward(self, task: int, final_response: BaseModel | None) -> float:
        return final_response.answer / 10 if isinstance(final_response, Answer) else 0.0


class FakeStack:
    """The SDK model (apredict/aupdate) and the version feed (trainer + node) in one."""

    def __init__(
        self,
        train_s: float = 0.6,
        answer_s: float = 0.02,
        hang_after: int | None = None,
        reward_s: float = 0.0,
        canary: bool = False,
    ) -> None:
        self.train_s, self.answer_s, self.hang_after, self.reward_s = train_s, answer_s, hang_after, reward_s
        #: the trainer publishes candidates and none goes live (a gate that never promotes): the feed
        #: reports each version published, with no live_at, and version 0 keeps answering
        self.canary = canary
        self.candidates = 0
        self.lock = threading.Lock()
        self.live = 0
        self.rewards: list[tuple[float, int]] = []  # (time, version that answered)
        self.sent: list[float] = []  # the reward values sent, in order
        self.consumed = 0
        self.training_until: float | None = None
        self.started = 0
        self.cancelled = 0
        self.max_generated_ahead = 0  # started - consumed, most seen at a start
        self.fail: set[int] = set()
        self.published: list[LiveVersion] = []
        self.trained_windows: list[list[int]] = []  # versions that answered each window's samples

    # -- the SDK model ----------------------------------------------------------------------------

    async def apredict(
        self,
        messages: Sequence[MessageT],
        tools: Sequence[Any] = (),
        additional_authorized_imports: Sequence[str] = (),
        final_answer_model: type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> PredictionResponseT:
        with self.lock:
            n = self.started
            self.started += 1
            version = self.live
            self.max_generated_ahead = max(self.max_generated_ahead, self.started - len(self.fail) - self.consumed)
        try:
            if self.hang_after is not None and n >= self.hang_after:
                await asyncio.sleep(3600)
            await asyncio.sleep(self.answer_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if n in self.fail:
            raise RuntimeError("the node did not answer")
        meta = {"prediction_id": f"p{n}", "adapter_version": version}
        return PredictionResponseT(final_response=Answer(answer=version), messages=[], metadata=meta)

    async def aupdate(self, predictions: Sequence[PredictionResponseWithRewardT]) -> None:
        await asyncio.sleep(self.reward_s)
        with self.lock:
            for p in predictions:
                assert p.prediction.metadata is not None
                self.rewards.append((time.time(), int(p.prediction.metadata["adapter_version"])))
                self.sent.append(p.reward)

    # -- the trainer and the node -----------------------------------------------------------------

    def poll(self) -> list[LiveVersion]:
        out = []
        with self.lock:
            now = time.time()
            if self.training_until is not None and now >= self.training_until:
                self.training_until = None
                self.trained_windows.append([v for _, v in self.rewards[self.consumed : self.consumed + W]])
                self.consumed += W
                if self.canary:
                    self.candidates += 1
                    out.append(LiveVersion(self.candidates, None, W, published_at=now))
                else:
                    self.live += 1
                    out.append(LiveVersion(self.live, now, W, published_at=now))
            if self.training_until is None and len(self.rewards) - self.consumed >= W:
                self.training_until = now + self.train_s
        self.published += out
        return out


def _run(
    stack: FakeStack, budget_s: float, sent_reward: Callable[[Sample], float] | None = None, **settings: Any
) -> tuple[LiveResults, list[VersionRow], float]:
    s = DemoSettings(
        demo_teardown_s=0.0,
        demo_cycle_guess_s=settings.pop("demo_cycle_guess_s", 0.5),
        demo_version_timeout_s=settings.pop("demo_version_timeout_s", 30.0),
        **settings,
    )
    rows: list[VersionRow] = []
    t0 = time.monotonic()
    results = asyncio.run(
        run_live_loop(
            CountingTask(),
            s,
            model=stack,
            feed=stack,
            window=W,
            deadline=t0 + budget_s,
            on_row=rows.append,
            log=lambda line: None,
            sent_reward=sent_reward,
        )
    )
    return results, rows, time.monotonic() - t0


def test_generation_overlaps_training_one_window_ahead():
    stack = FakeStack(train_s=0.4)
    results, _, took = _run(stack, 4.0)
    by_version = results.rewards()
    assert len(by_version[0]) == 2 * W  # v0 filled the window v1 trains on, and the next one meanwhile
    assert stack.max_generated_ahead <= 2 * W  # never more than one window beside the one in training
    assert stack.published and stack.published[-1].version >= 2  # ~1 s a version (the feed polls every 0.5 s)
    # the window of v2 was answered by v0 while v1 trained: samples one version old, never older
    assert stack.trained_windows[1] == [0] * W
    for k, window in enumerate(stack.trained_windows):
        assert all(k - 1 <= v <= k for v in window)
    # every answer is attributed to the version that gave it
    assert all(r == pytest.approx(v / 10) for v, rs in by_version.items() for r in rs)
    assert took < 4.0 + 1.0 and results.stop_reason == "time"


def test_max_ahead_zero_waits_for_each_version():
    stack = FakeStack()
    results, _, _ = _run(stack, 2.5, demo_max_ahead=0)
    assert len(results.rewards()[0]) == W
    assert stack.max_generated_ahead <= W
    assert all(set(w) == {k} for k, w in enumerate(stack.trained_windows))  # on-policy, no overlap


def test_rows_come_in_version_order_one_per_version_with_its_traffic():
    stack = FakeStack()
    results, rows, _ = _run(stack, 3.0)
    assert [r.version for r in rows] == sorted({0, *(v.version for v in results.versions)})
    assert rows == results.rows
    counts = {v: len(rs) for v, rs in results.rewards().items()}
    for row in rows:
        assert row.samples == counts.get(row.version, 0)
        if row.samples:
            assert row.reward == pytest.approx(row.version / 10)
    assert rows[0].examples is None and all(r.examples == W for r in rows[1:])


def test_in_flight_requests_are_cancelled_at_the_end_within_the_budget():
    stack = FakeStack(hang_after=W)  # the first window answers, everything after hangs
    results, _, took = _run(stack, 2.5)
    assert results.stop_reason == "time"
    assert results.cancelled >= 1 and stack.cancelled == results.cancelled
    assert len(results.samples) == W
    assert took < 2.5 + 0.5


def test_a_reward_on_its_way_when_generation_stops_is_still_sent():
    stack = FakeStack(hang_after=W, reward_s=1.5)  # the rewards are still sending at the stop (~1 s)
    results, _, _ = _run(stack, 1.5)
    assert len(results.samples) == W
    assert len(stack.rewards) == W


def test_the_budget_keeps_a_cycle_for_the_last_version_and_waits_for_it():
    stack = FakeStack(train_s=0.5)
    # a guessed cycle of 2 s in a 3 s budget: generation stops after ~1 s, a window is pending
    results, _, took = _run(stack, 3.0, demo_cycle_guess_s=2.0)
    assert results.stop_reason == "time" and results.generation_s < 1.5
    went_live = [v for v in results.versions if v.live_at is not None]
    assert went_live, "the version in training at the stop went live before the deadline"
    assert took < 3.0 + 0.5


def test_max_versions_stops_once_the_newest_answered_a_window():
    stack = FakeStack()
    results, rows, _ = _run(stack, 20.0, demo_max_versions=2)
    assert results.stop_reason == "max_versions"
    assert sum(1 for s in results.samples if s.version >= 2) >= W
    assert 2 in [r.version for r in rows]


def test_failed_predictions_are_counted_and_not_rewarded():
    stack = FakeStack()
    stack.fail = {1, 5}
    results, _, _ = _run(stack, 2.0)
    assert results.failed == 2
    assert len(stack.rewards) == len(results.samples)
    assert len(results.samples) + results.failed + results.cancelled == stack.started


def test_a_trainer_that_never_publishes_fails_the_run():
    stack = FakeStack(train_s=3600.0)
    with pytest.raises(StackError, match="no version after v0"):
        _run(stack, 20.0, demo_version_timeout_s=1.0)


def test_a_dead_part_fails_the_run():
    def dead() -> None:
        raise StackError("the trainer exited")

    s = DemoSettings(demo_teardown_s=0.0, demo_cycle_guess_s=0.5)
    stack = FakeStack()
    with pytest.raises(StackError, match="trainer exited"):
        asyncio.run(
            run_live_loop(
                CountingTask(), s, model=stack, feed=stack, window=W, deadline=time.monotonic() + 5, check_alive=dead
            )
        )


def test_sent_reward_changes_what_is_sent_not_what_is_measured():
    stack = FakeStack()
    sent_for: list[float] = []

    def sent_reward(sample: Sample) -> float:
        sent_for.append(sample.reward)
        return 1.0 - sample.reward

    results, _, _ = _run(stack, 2.5, sent_reward=sent_reward)
    assert results.samples and all(s.reward == pytest.approx(s.version / 10) for s in results.samples)
    assert sorted(stack.sent) == sorted(1.0 - r for r in sent_for)
    assert len(stack.sent) == len(results.samples)


def test_without_sent_reward_the_true_reward_is_sent():
    stack = FakeStack()
    results, _, _ = _run(stack, 2.0)
    assert sorted(stack.sent) == sorted(s.reward for s in results.samples)


def test_with_the_canary_generation_paces_on_published_versions_not_live_ones():
    """With the gate on, versions are candidates: none may go live for minutes. Generation must keep
    going as the trainer publishes (it consumes the windows), never stall on the live version."""
    stack = FakeStack(train_s=0.3, canary=True)
    results, rows, _ = _run(stack, 3.0, demo_version_timeout_s=1.0)
    assert stack.candidates >= 3  # windows kept coming although nothing new went live
    assert results.stop_reason == "time"
    assert {s.version for s in results.samples} == {0}
    assert [r.version for r in rows] == [0]
    assert stack.max_generated_ahead <= 2 * W  # the max_ahead bound holds on publications
