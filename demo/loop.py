"""The live loop: serve new prompts on the live adapter, reward each answer, while the trainer trains.

Generation never waits for a round to finish training: while version N trains, new prompts are
answered by the live version and their rewards fill the next window (the trainer's truncated
importance weights correct for samples one version old). :mod:`demo.pacing` keeps generation at most
``demo_max_ahead`` windows ahead of the window in training, and stops it when the time left is only
enough for the version in training to go live and the teardown. What was still in flight then is
cancelled: nobody needs those answers, and vLLM would keep computing them.

The measurement is the live traffic itself: each prompt is answered once, by the version that
``metadata["adapter_version"]`` names, before anything trains on it. A version's row is printed once
no request that could still be answered by it is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic

from demo.observe import LiveVersion, VersionFeed
from demo.pacing import cycle_estimate, generation_allowed, out_of_time, window_pending
from demo.report import VersionRow, make_row
from demo.settings import DemoSettings
from demo.spec import TaskSpec, TaskT
from demo.workload import Predictor, Sample, answer, send_reward
from schemas.errors import StackError

__all__ = ["LiveResults", "run_live_loop"]

_POLL_S = 0.5
_HEALTH_EVERY_S = 5.0


@dataclass
class LiveResults:
    window: int  # the trainer's window size the loop paced itself by
    samples: list[Sample] = field(default_factory=list)
    versions: list[LiveVersion] = field(default_factory=list)  # published and seen, oldest first
    rows: list[VersionRow] = field(default_factory=list)  # one per version that served, in order
    stop_reason: str = ""  # "time" or "max_versions"
    failed: int = 0  # predictions that raised (no answer, no reward)
    cancelled: int = 0  # in flight when generation stopped
    generation_s: float = 0.0

    def rewards(self) -> dict[int, list[float]]:
        """Version -> the rewards of the live prompts it answered."""
        out: dict[int, list[float]] = {}
        for s in self.samples:
            out.setdefault(s.version, []).append(s.reward)
        return out


class _Loop(Generic[TaskT]):
    def __init__(
        self,
        spec: TaskSpec[TaskT],
        settings: DemoSettings,
        model: Predictor,
        feed: VersionFeed,
        window: int,
        deadline: float,
        check_alive: Callable[[], None],
        on_row: Callable[[VersionRow], None],
        on_sample: Callable[[Sample], None],
        log: Callable[[str], None],
        sent_reward: Callable[[Sample], float] | None = None,
    ) -> None:
        self.spec, self.s, self.model, self.feed = spec, settings, model, feed
        self.sent_reward = sent_reward
        self.deadline, self.check_alive = deadline, check_alive
        self.on_row, self.on_sample, self.log = on_row, on_sample, log
        self.res = LiveResults(window)
        self.prompts = spec.prompts(settings.demo_seed)
        self.inflight: dict[asyncio.Task[None], float] = {}  # task -> start (unix s)
        self.rewarded = 0
        self.consumed = 0  # examples trained into the newest live version and its ancestors
        self.newest = 0  # the newest version live
        self.published = 0  # the newest version the feed reported (live, or with the canary on: published)
        self.error: BaseException | None = None
        self.changed = asyncio.Event()
        self.pending_since: float | None = None
        self.emitted: set[int] = set()
        self.sending: set[asyncio.Future[None]] = set()  # rewards on their way to Kafka

    # -- predictions ------------------------------------------------------------------------------

    def _start(self) -> None:
        task = asyncio.create_task(self._one(next(self.prompts)))
        self.inflight[task] = time.time()
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.pop(task, None)
        self.changed.set()
        self._emit_rows()

    async def _one(self, task: TaskT) -> None:
        try:
            sample, response = await answer(self.model, self.spec, task, self.s)
        except Exception as exc:  # counted; a dead node is caught by the health check
            self.res.failed += 1
            if self.res.failed <= 3:
                self.log(f"a prediction failed: {exc!r}")
            if self.res.failed >= 20 and self.res.failed > len(self.res.samples):
                self.error = StackError(f"most predictions fail; the last: {exc!r}")
            return
        self.res.samples.append(sample)  # answered: a measurement of its version, rewarded or not
        self.on_sample(sample)
        # An answered prediction gets its reward, as in production; the send is shielded from the
        # end-of-run cancellation (cancelling a publish mid-flight buys nothing, and it upsets the
        # SDK publisher's delivery thread). It is awaited before the loop returns.
        sent = None if self.sent_reward is None else self.sent_reward(sample)
        sending = asyncio.ensure_future(send_reward(self.model, response, sample, self.spec.name, sent))
        self.sending.add(sending)
        sending.add_done_callback(self._sent)
        with contextlib.suppress(Exception):  # handled by _sent
            await asyncio.shield(sending)

    def _sent(self, sending: asyncio.Future[None]) -> None:
        self.sending.discard(sending)
        if sending.cancelled():
            return
        if (exc := sending.exception()) is not None:  # Kafka refused a reward: the run cannot go on
            self.error = exc
            self.changed.set()
            return
        self.rewarded += 1

    async def _cancel_inflight(self) -> int:
        tasks = list(self.inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    # -- versions ---------------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            try:
                new = await asyncio.to_thread(self.feed.poll)
            except Exception as exc:  # handed to the main loop, which raises it
                self.error = exc
                self.changed.set()
                return
            for live in new:
                self.res.versions.append(live)
                self.consumed += live.examples
                self.published = max(self.published, live.version)
                self.pending_since = None
                if live.live_at is not None:
                    self.newest = max(self.newest, live.version)
                    self.log(f"v{live.version} live (trained on {live.examples} examples)")
                else:
                    self.log(f"v{live.version} published (trained on {live.examples} examples)")
            if new:
                self.changed.set()
                self._emit_rows()
            await asyncio.sleep(_POLL_S)

    def _emit_rows(self, final: bool = False) -> None:
        """Print each version's row once nothing in flight can still be answered by it: its
        successor is live and every request in flight started after that switch."""
        live = {v.version: v for v in self.res.versions if v.live_at is not None}
        order = [0, *sorted(live)]
        if final:
            order = sorted({*order, *(s.version for s in self.res.samples)})
        rewards = self.res.rewards()
        for i, version in enumerate(order):
            if version in self.emitted:
                continue
            if not final:
                if i + 1 >= len(order):
                    break
                switched = live[order[i + 1]].live_at or 0.0
                if any(started <= switched for started in self.inflight.values()):
                    break
            self.emitted.add(version)
            row = make_row(version, rewards.get(version, []), live.get(version))
            self.res.rows.append(row)
            self.on_row(row)

    # -- the loop ---------------------------------------------------------------------------------

    def _capped(self) -> bool:
        cap = self.s.demo_max_versions
        if cap is None or self.newest < cap:
            return False
        return sum(1 for s in self.res.samples if s.version >= cap) >= self.res.window

    def _check_stalled(self, now: float) -> None:
        if not window_pending(self.rewarded, self.consumed, self.res.window):
            self.pending_since = None
            return
        if self.pending_since is None:
            self.pending_since = now
        elif now - self.pending_since > self.s.demo_version_timeout_s:
            raise StackError(
                f"a full window waited {self.s.demo_version_timeout_s:g} s "
                f"and no version after v{self.newest} went live"
            )

    async def _generate(self) -> str:
        next_health = 0.0
        while True:
            if self.error is not None:
                raise self.error
            now = time.monotonic()
            if self._capped():
                return "max_versions"
            # the trainer's pace: publication times (with the canary on, versions go live far less often)
            published = [t for v in self.res.versions if (t := v.published_at or v.live_at) is not None]
            if out_of_time(
                now, self.deadline, cycle_estimate(published, self.s.demo_cycle_guess_s), self.s.demo_teardown_s
            ):
                return "time"
            if now >= next_health:
                await asyncio.to_thread(self.check_alive)
                next_health = now + _HEALTH_EVERY_S
            self._check_stalled(now)
            while len(self.inflight) < self.s.demo_concurrency and generation_allowed(
                self.rewarded + len(self.inflight), self.consumed, self.res.window, self.s.demo_max_ahead
            ):
                self._start()
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), _POLL_S)

    async def _await_next_version(self) -> None:
        """After generation stopped: wait for the version in training, within the budget."""
        target, until = self.published + 1, self.deadline - self.s.demo_teardown_s
        self.log(f"generation stopped; waiting for v{target}")
        while self.published < target and time.monotonic() < until:
            if self.error is not None:
                raise self.error
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), _POLL_S)
        if self.published < target:
            self.log(f"v{target} did not come within the budget")

    async def run(self) -> LiveResults:
        t0 = time.monotonic()
        watcher = asyncio.create_task(self._watch())
        try:
            self.res.stop_reason = await self._generate()
            self.res.generation_s = time.monotonic() - t0
            self.res.cancelled = await self._cancel_inflight()
            if self.res.stop_reason == "time" and window_pending(self.rewarded, self.consumed, self.res.window):
                await self._await_next_version()
        finally:
            await self._cancel_inflight()  # on failure too: no request outlives the loop
            await asyncio.gather(*self.sending, return_exceptions=True)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        self._emit_rows(final=True)
        return self.res


async def run_live_loop(
    spec: TaskSpec[TaskT],
    settings: DemoSettings,
    *,
    model: Predictor,
    feed: VersionFeed,
    window: int,
    deadline: float,
    check_alive: Callable[[], None] = lambda: None,
    on_row: Callable[[VersionRow], None] = lambda row: None,
    on_sample: Callable[[Sample], None] = lambda sample: None,
    log: Callable[[str], None] = print,
    sent_reward: Callable[[Sample], float] | None = None,
) -> LiveResults:
    """Serve ``spec``'s prompts live on ``model`` (the SDK model of a running stack) until
    ``deadline`` (``time.monotonic()`` seconds, teardown included) or ``demo_max_versions``.

    ``feed`` says which versions went live; ``window`` is the trainer's window size (pacing only);
    ``check_alive`` raises when a part died; rows go to ``on_row`` as each version's traffic ends.
    ``sent_reward`` (robustness benchmarks): the reward to send for a sample, in the order answers
    come; the sample keeps the spec's true reward, which is what the loop measures.
    """
    loop = _Loop(spec, settings, model, feed, window, deadline, check_alive, on_row, on_sample, log, sent_reward)
    return await loop.run()
