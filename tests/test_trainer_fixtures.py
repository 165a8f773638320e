"""Helpers shared by the trainer's real-stack tests (no tests here): examples, trainer processes' env,
patient Kafka reads."""

from __future__ import annotations

import os
import time
from typing import Any

from devstack import StackSettings
from devstack.checkpoint import ensure_checkpoint
from schemas.events import Message, PredictionEvent, RewardEvent, TrainingExample


def example(model_id: str, i: int) -> TrainingExample:
    """A one-turn example "Say i." -> "i" with reward i % 2."""
    p = PredictionEvent(
        model_id=model_id,
        base_model="smollm2-135m-instruct",
        messages=[Message(role="user", content=f"Say {i}."), Message(role="assistant", content=f"{i}")],
    )
    r = RewardEvent(prediction_id=p.prediction_id, model_id=model_id, reward=float(i % 2))
    return TrainingExample.join(p, r)


def trainer_env(
    topic_prefix: str, bucket: str, group: str, s3: StackSettings, window: int, **extra: str
) -> dict[str, str]:
    """The environment of a small, fast trainer process (rank-4 LoRA on q/v, 64 tokens); ``extra`` wins."""
    return {
        **os.environ,
        "MC_TOPIC_PREFIX": topic_prefix,
        "MC_S3_BUCKET": bucket,
        "MC_TRAINER_BASE_MODEL_PATH": str(ensure_checkpoint(s3.cache_dir)),
        "MC_TRAINER_GROUP_ID": group,
        "MC_TRAINER_WINDOW_EXAMPLES": str(window),
        "MC_TRAINER_WINDOW_SECONDS": "600",
        "MC_TRAINER_MAX_SEQ_LEN": "64",
        "MC_TRAINER_LORA_RANK": "4",
        "MC_TRAINER_TARGET_MODULES": '["q_proj", "v_proj"]',
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def patiently(read: Any) -> Any:
    """A Kafka read retried for up to 60 s: the shared broker may be restarting (a chaos run)."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + 60
    while True:
        try:
            return read()
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
