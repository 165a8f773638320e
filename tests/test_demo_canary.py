"""The demo's canary bookkeeping (pure logic; the gate itself is tested in test_canary_stack.py)."""

from __future__ import annotations

import pytest

from demo.canary import Served, canary_enabled


def test_outcome_of_a_published_version():
    assert Served(None, 10.0).outcome == "never a canary"
    assert Served(None, 10.0, canary_at=12.0).outcome == "canary at the end"
    assert Served(None, 10.0, canary_at=12.0, refused=True).outcome == "refused"
    promoted = Served(None, 10.0, canary_at=12.0, live_at=80.0)
    assert promoted.outcome == "promoted"
    assert promoted.first_served == 12.0  # freshness counts to the first answer, as the canary
    assert Served(None, 10.0, live_at=15.0).first_served == 15.0  # a person's promote, no canary


def test_canary_enabled_reads_the_trainers_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MC_TRAINER_CANARY_ENABLED", raising=False)
    monkeypatch.delenv("MC_TRAINER_CANARY_MODELS", raising=False)
    assert not canary_enabled("demo-x")
    monkeypatch.setenv("MC_TRAINER_CANARY_ENABLED", "true")
    assert canary_enabled("demo-x")
    monkeypatch.setenv("MC_TRAINER_CANARY_MODELS", '{"demo-x": false}')
    assert not canary_enabled("demo-x")
