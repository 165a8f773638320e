"""The gate's Kafka side on the real broker (no vLLM needed): it resumes from the topics after a crash,
and a person's promotion through ``mc adapters promote`` is a signed live record every reader agrees on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from gate.admin import promote
from gate.service import GateService, read_state
from gate.settings import GateSettings
from producers import EventPublisher
from schemas.events import AdapterUpdate, Message, PredictionEvent, RewardEvent, TrainingExample
from schemas.signing import sign_update
from schemas.storage import adapter_uri
from schemas.topics import TopicKey

SHA = "a" * 64


def _update(settings: GateSettings, model: str, version: int, **kw: object) -> AdapterUpdate:
    files = {"adapter_config.json": SHA, "adapter_model.safetensors": SHA}
    uri = adapter_uri(settings.s3_bucket, model, version)
    update = AdapterUpdate(model_id=model, version=version, uri=uri, files=files, base_model="b", **kw)
    return sign_update(update, settings.signing_key())


def _examples(pub: EventPublisher, model: str, version: int, reward: float, n: int) -> None:
    for _ in range(n):
        p = PredictionEvent(
            model_id=model, base_model="b", adapter_version=version, messages=[Message(role="user", content="q")]
        )
        r = RewardEvent(model_id=model, prediction_id=p.prediction_id, reward=reward)
        pub.publish(TopicKey.TRAINING_EXAMPLES, TrainingExample.join(p, r))
    pub.flush()


@contextmanager
def _gate(settings: GateSettings) -> Iterator[GateService]:
    service, stop = GateService(settings), threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        stop.set()
        thread.join(30)


def _until(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.3)


@pytest.mark.kafka
def test_a_restarted_gate_keeps_the_rewards_it_had_and_decides(topics, model_id):
    settings = GateSettings(
        topic_prefix=topics().topic_prefix, gate_margin=0.2, gate_min_rewards=10, gate_check_every=5, gate_poll_s=0.2
    )
    mid = model_id()

    def canary() -> int | None:
        view = read_state(settings, examples=False).view(mid)
        return view.canary.version if view.canary is not None else None

    with EventPublisher(settings) as pub:
        pub.publish(TopicKey.ADAPTER_UPDATES, _update(settings, mid, 1)).result(30)
        pub.publish(TopicKey.ADAPTER_UPDATES, _update(settings, mid, 2, stage="candidate")).result(30)
        with _gate(settings) as first:
            _until("the canary started", lambda: canary() == 2)
            _examples(pub, mid, 2, 0.0, 9)  # one short of a look: no verdict yet
            _examples(pub, mid, 1, 1.0, 12)
            time.sleep(1.0)
        assert first.announced == {"canary": 1}
        with _gate(settings) as second:  # a new process would read the same topics the same way
            _examples(pub, mid, 2, 0.0, 1)
            _until("the refusal", lambda: canary() is None)
        assert second.announced == {"refuse": 1}  # decided on the 9 rewards it read back plus the new one
        state = read_state(settings)
        decision = state.view(mid).last_decision
        assert decision is not None and decision.outcome == "refuse"
        assert decision.candidate_rewards == 10 and decision.live_rewards == 12
        assert state.view(mid).live_version == 1 and state.view(mid).ended == {2}

        # A person promotes the next canary before the gate has an opinion.
        pub.publish(TopicKey.ADAPTER_UPDATES, _update(settings, mid, 3, stage="candidate")).result(30)
        with _gate(settings):
            _until("v3 canary", lambda: canary() == 3)
            promote(settings, mid)
            _until("v3 live", lambda: read_state(settings, examples=False).view(mid).live_version == 3)
        view = read_state(settings, examples=False).view(mid)
        assert view.canary is None and view.last_decision is not None
        assert view.last_decision.decided_by == "person" and view.last_decision.outcome == "promote"
