"""When the live loop may start another prediction, and when it must stop generating.

Generation and training overlap: while the trainer trains the window that makes version N+1, the
app keeps serving new prompts on the live version N and sending their rewards, which fill the next
window. Two things bound that overlap, because on a 2-core machine vLLM and the trainer share the CPU:

* freshness: generation runs at most ``max_ahead`` windows ahead of the window in training. With
  the default 1, the next window is full when version N+1 goes live, so the trainer never waits
  for data, and no sample is more than one version older than the adapter it trains;
* the budget: generation stops when the time left is only enough for the version in training to go
  live (one measured cycle) and the teardown.

Pure functions of counts and times, so the policy is unit-tested without a stack.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence

__all__ = ["cycle_estimate", "generation_allowed", "out_of_time", "window_pending"]


def generation_allowed(generated: int, consumed: int, window: int, max_ahead: int) -> bool:
    """Whether one more prediction may start.

    ``generated``: predictions rewarded or in flight (failed ones never become examples, so they do
    not count); ``consumed``: examples the newest live version and its ancestors were trained on
    (from their manifests, so a window the trainer closed early by time counts at its real size);
    ``window``: the trainer's window size. Allowed while ``generated`` stays below one window for
    the version in training plus ``max_ahead`` windows.
    """
    return generated < consumed + (1 + max_ahead) * window


def window_pending(rewarded: int, consumed: int, window: int) -> bool:
    """Whether a full window of rewards is waiting for (or in) training, i.e. a version will come."""
    return rewarded - consumed >= window


def cycle_estimate(live_at: Sequence[float], default_s: float, last: int = 3) -> float:
    """Seconds from one version going live to the next: the median of the last ``last`` intervals
    between consecutive versions (``default_s`` until two versions were seen). Version 1's own
    delay is left out: it includes the trainer's start-up."""
    times = sorted(live_at)
    gaps = [b - a for a, b in itertools.pairwise(times)][-last:]
    return float(statistics.median(gaps)) if gaps else default_s


def out_of_time(now: float, deadline: float, cycle_s: float, teardown_s: float) -> bool:
    """Stop generating now if the version in training, going live one cycle from now, and the
    teardown would not both fit before the deadline."""
    return now + cycle_s + teardown_s >= deadline
