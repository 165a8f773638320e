"""The smoke round trip ``mc demo`` runs until the end-to-end learning demo exists.

One prediction and its reward go through Kafka and are read back, typed; a file goes to S3 and back;
vLLM answers a chat completion. Every step talks to the real service; a failure names the step.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

from devstack.settings import StackSettings
from producers.consumer import EventConsumer
from producers.publisher import EventPublisher
from producers.settings import ProducerSettings
from schemas.events import Message, PredictionEvent, RewardEvent
from schemas.storage import s3_client
from schemas.topics import TopicKey

__all__ = ["run"]


def run() -> dict[str, object]:
    s = StackSettings()
    timings: dict[str, float] = {}
    model_id = f"smoke-{uuid.uuid4().hex[:8]}"

    t = time.perf_counter()
    prediction = PredictionEvent(
        model_id=model_id,
        base_model=s.base_model_name,
        messages=[Message(role="user", content="2+3?"), Message(role="assistant", content="5")],
        final_answer={"answer": 5},
    )
    reward = RewardEvent(prediction_id=prediction.prediction_id, model_id=model_id, reward=1.0, source="smoke")
    with EventPublisher(ProducerSettings()) as pub:
        p_at = pub.publish_prediction(prediction).result(30)
        r_at = pub.publish_reward(reward).result(30)
    if p_at.partition != r_at.partition:
        raise RuntimeError(f"prediction on partition {p_at.partition}, reward on {r_at.partition}")
    group = f"smoke-{uuid.uuid4().hex}"
    for key, etype, want in (
        (TopicKey.PREDICTIONS, PredictionEvent, prediction),
        (TopicKey.REWARDS, RewardEvent, reward),
    ):
        with EventConsumer(key, etype, group_id=group, settings=s) as consumer:
            found = any(c.event == want for c in consumer.events(idle_timeout_s=10))
        if not found:
            raise RuntimeError(f"{key.value}: the event just published was not read back")
    timings["kafka_s"] = time.perf_counter() - t

    t = time.perf_counter()
    s3 = s3_client(s)
    obj_key = f"smoke/{model_id}.json"
    s3.put_object(Bucket=s.s3_bucket, Key=obj_key, Body=prediction.model_dump_json().encode())
    back = s3.get_object(Bucket=s.s3_bucket, Key=obj_key)["Body"].read()
    if PredictionEvent.model_validate_json(back) != prediction:
        raise RuntimeError("s3: the object read back differs")
    s3.delete_object(Bucket=s.s3_bucket, Key=obj_key)
    timings["s3_s"] = time.perf_counter() - t

    t = time.perf_counter()
    body = json.dumps(
        {
            "model": s.base_model_name,
            "temperature": 0,
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "What is 2+3? Answer with a number."}],
        }
    )
    req = urllib.request.Request(
        f"{s.vllm_url}/v1/chat/completions", body.encode(), {"content-type": "application/json", **s.vllm_headers()}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        answer = json.load(resp)["choices"][0]["message"]["content"]
    timings["vllm_s"] = time.perf_counter() - t
    print(f"kafka: prediction and reward on partition {p_at.partition}; s3: round trip ok; vllm says {answer!r}")
    return {"ok": True, "answer": answer, **{k: round(v, 3) for k, v in timings.items()}}
