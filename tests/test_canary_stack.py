"""The canary on the real stack (Kafka, MinIO, vLLM): the gate, two inference nodes, no person involved.

v1 is live. v2 is proposed as a candidate; the gate makes it the canary and the nodes route half of
the requests to it; each answer is rewarded as an app would (through training-examples, as the
processor publishes them): v2's answers get 0, v1's get 1. The gate refuses v2 by itself; from then
on no node answers with v2, and a node started after the decision agrees. Then v3 is proposed and
rewarded as well as live: the gate promotes it and both nodes serve it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from gate.admin import status as gate_status
from gate.service import GateService
from gate.settings import GateSettings
from inference.adapters import delete_adapters, upload_adapter, write_synthetic_adapter
from inference.api import NodeClient
from inference.launch import node_process
from producers import EventPublisher
from schemas.events import AdapterUpdate, Message, PredictionEvent, RewardEvent, TrainingExample
from schemas.signing import sign_update
from schemas.storage import s3_client
from schemas.topics import TopicKey

FRACTION = "0.5"


def _node(prefix: str, tmp: Path, name: str):
    env = {
        "MC_TOPIC_PREFIX": prefix,
        "MC_NODE_ADAPTER_CACHE_DIR": str(tmp / name),
        "MC_NODE_ID": name,
        "MC_NODE_UNLOAD_GRACE_S": "0.5",
        "MC_NODE_CANARY_FRACTION": FRACTION,
    }
    return node_process(env, log_path=tmp / f"{name}.log")


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(what)
        time.sleep(0.1)
    return time.monotonic() - t0


def _ask(node: NodeClient, model: str, prompt: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 1, "temperature": 0}
    resp = node.chat(body)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["mc_adapter_version"])


def _reward(pub: EventPublisher, model: str, version: int, reward: float) -> None:
    """What the app's reward and the processor's join make of one answer."""
    prediction = PredictionEvent(
        model_id=model, base_model="b", adapter_version=version, messages=[Message(role="user", content="q")]
    )
    example = TrainingExample.join(
        prediction, RewardEvent(model_id=model, prediction_id=prediction.prediction_id, reward=reward)
    )
    pub.publish(TopicKey.TRAINING_EXAMPLES, example).result(30)


def _canary(node: NodeClient, model: str) -> int | None:
    live = node.status().models.get(model)
    return live.canary.version if live is not None and live.canary is not None else None


def _propose(pub: EventPublisher, update: AdapterUpdate, key: bytes) -> None:
    """What a trainer with MC_TRAINER_CANARY_ENABLED announces: the new version as a candidate."""
    pub.publish(TopicKey.ADAPTER_UPDATES, sign_update(update.model_copy(update={"stage": "candidate"}), key)).result(30)


def _live(node: NodeClient, model: str) -> int | None:
    live = node.status().models.get(model)
    return live.version if live is not None else None


def _is(read: Callable[[NodeClient, str], int | None], node: NodeClient, model: str, version: int) -> bool:
    return read(node, model) == version


def _phase(pub: EventPublisher, nodes: list[NodeClient], model: str, rewards: dict[int, float], tag: str) -> list[Any]:
    """Ask every node each prompt and reward the first answer, until the canary ends; (prompt, version)s.

    While the canary runs, every node answers a prompt with the same version (the routing is a hash).
    """
    answers: list[Any] = []
    i = 0
    while _canary(nodes[0], model) is not None:
        assert i < 200, "the gate did not decide"
        prompt = f"{tag} {i}: say a number"
        versions = [_ask(node, model, prompt) for node in nodes]
        if len(set(versions)) > 1:  # only while a node has read the verdict and another not yet
            assert any(_canary(node, model) is None for node in nodes), (prompt, versions)
        answers.append((prompt, versions[0]))
        _reward(pub, model, versions[0], rewards[versions[0]])
        i += 1
    return answers


@pytest.mark.kafka
@pytest.mark.s3
@pytest.mark.vllm
def test_the_gate_refuses_a_bad_canary_and_promotes_a_good_one_on_two_nodes(vllm, s3, topics, model_id, tmp_path):
    from devstack import StackSettings
    from devstack.checkpoint import ensure_checkpoint

    settings = topics()
    mid = model_id()
    store = s3_client(settings)
    checkpoint = ensure_checkpoint(StackSettings().cache_dir)
    updates = {
        v: upload_adapter(
            store,
            settings,
            mid,
            v,
            write_synthetic_adapter(checkpoint, tmp_path / f"w{v}", seed=v, r=4),
            parent_version=v - 1 or None,
        )
        for v in (1, 2, 3)
    }
    gate_settings = GateSettings(
        topic_prefix=settings.topic_prefix,
        gate_margin=0.2,
        gate_min_rewards=10,
        gate_check_every=5,
        gate_max_rewards=60,
        gate_poll_s=0.2,
    )
    key = gate_settings.signing_key()
    gate = GateService(gate_settings)
    stop = threading.Event()
    gate_thread = threading.Thread(target=gate.run, args=(stop,), daemon=True)
    gate_thread.start()
    try:
        with EventPublisher(settings) as pub, _node(settings.topic_prefix, tmp_path, f"{mid}-a") as node_a:
            pub.publish(TopicKey.ADAPTER_UPDATES, updates[1]).result(30)
            _wait("v1 live on a", lambda: _live(node_a, mid) == 1)

            # -- a bad candidate: refused by the gate alone ---------------------------------------
            _propose(pub, updates[2], key)
            _wait("v2 canary on a", lambda: _canary(node_a, mid) == 2)
            bad = _phase(pub, [node_a], mid, {1: 1.0, 2: 0.0}, "bad")
            assert {v for _, v in bad} == {1, 2}
            status_a = node_a.status().models[mid]
            assert status_a.version == 1 and status_a.refused == [2]
            assert status_a.decision is not None and status_a.decision.outcome == "refuse"
            assert status_a.decision.decided_by == "gate" and status_a.decision.candidate_rewards >= 10
            after = [_ask(node_a, mid, prompt) for prompt, v in bad if v == 2]  # the prompts v2 answered
            assert set(after) == {1}  # never served again

            # -- a node started after the decision agrees ---------------------------------------
            with _node(settings.topic_prefix, tmp_path, f"{mid}-b") as node_b:
                _wait("v1 live on b", partial(_is, _live, node_b, mid, 1))  # caught up; v1 loads just after
                status_b = node_b.status().models[mid]
                assert status_b.version == 1 and status_b.canary is None and status_b.refused == [2]
                assert _ask(node_b, mid, bad[0][0]) == 1

                # -- a good candidate: promoted, on both nodes ---------------------------------
                _propose(pub, updates[3], key)
                for node in (node_a, node_b):
                    _wait("v3 canary", partial(_is, _canary, node, mid, 3))
                good = _phase(pub, [node_a, node_b], mid, {1: 1.0, 3: 1.0}, "good")
                assert {v for _, v in good} == {1, 3}
                for node in (node_a, node_b):
                    _wait("v3 live", partial(_is, _live, node, mid, 3))
                assert {_ask(node, mid, p) for p, _ in good[:4] for node in (node_a, node_b)} == {3}
                statuses = [node.status().models[mid] for node in (node_a, node_b)]
                for st in statuses:
                    assert st.version == 3 and st.canary is None and st.refused == [2]
                    assert st.decision is not None and st.decision.outcome == "promote"
                    assert 2 not in [h.version for h in st.history]
        report = gate_status(gate_settings, mid)
        assert report["live"]["version"] == 3 and report["ended"] == [2]
        assert report["last_decision"]["outcome"] == "promote"
        assert gate.announced == {"canary": 2, "refuse": 1, "promote": 1}
    finally:
        stop.set()
        gate_thread.join(30)
        delete_adapters(store, settings, mid)
