"""Robustness cases of ``mc bench learn``: the rewards the app *sends* differ from the true ones.

- ``noise``: each sent reward is flipped (``1 - r``) with probability 0.1.
- ``zeros`` / ``ones``: the first K windows' rewards are all sent as 0 (or all as 1), then the true
  ones: a stretch without contrast, after which learning must still work (and not collapse).

The loop keeps measuring the true reward (the spec's); only what goes to Kafka changes, through the
loop's ``sent_reward`` hook (:func:`demo.loop.run_live_loop`). Rewards are counted in the order the
answers come, which is the order the trainer's windows fill.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from demo.workload import Sample

__all__ = ["CASES", "SentReward", "make_case"]

#: the cases by name (what ``--cases`` chooses from)
CASES: tuple[str, ...] = ("noise", "zeros", "ones")

NOISE_P = 0.1


@dataclass
class SentReward:
    """The reward to send for each answered sample, in order: a constant for the first
    ``constant_for`` rewards (when ``constant`` is set), else the true reward flipped with
    probability ``flip_p`` (seeded)."""

    flip_p: float = 0.0
    constant: float | None = None
    constant_for: int = 0
    seed: int = 0
    sent: int = 0  # rewards sent so far
    changed: int = 0  # of them, sent with another value than the true one
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"sent-reward:{self.seed}")

    def __call__(self, sample: Sample) -> float:
        index, self.sent = self.sent, self.sent + 1
        if self.constant is not None and index < self.constant_for:
            out = self.constant
        elif self.flip_p > 0 and self._rng.random() < self.flip_p:
            out = 1.0 - sample.reward
        else:
            out = sample.reward
        if out != sample.reward:
            self.changed += 1
        return out


def make_case(name: str, *, window: int, stretch_windows: int, seed: int) -> SentReward:
    """The transform of case ``name`` (one of :data:`CASES`) for a trainer with ``window``-example
    windows; ``zeros``/``ones`` hold for the first ``stretch_windows`` windows."""
    if name == "noise":
        return SentReward(flip_p=NOISE_P, seed=seed)
    if name in ("zeros", "ones"):
        return SentReward(constant=float(name == "ones"), constant_for=stretch_windows * window, seed=seed)
    raise ValueError(f"unknown case {name!r}; choose from {', '.join(CASES)}")
