"""JSON Schema of every record published on a contract topic, for producers in any language.

The schemas are generated from the pydantic models (:mod:`schemas.events`, :mod:`schemas.dead_letter`),
committed under ``schemas/json/`` and shipped in the package; ``mc schemas export [--out DIR]`` writes
them again and a test keeps the committed files equal to what the models generate.

The wire schema is a little stricter than the model, where the model's default would hide a producer's
mistake: ``schema_version`` (``decode`` refuses a record without it), ``created_at`` (a default would be
the consumer's clock, not the event's time) and the event's own id (a default would be a fresh random
id on every read, so a re-delivered record could not be recognised) are required. And JSON types are
JSON types: pydantic's lax mode reads the string ``"1.0"`` as a reward of 1.0, the schema does not.
(Making these fields required in the models themselves would be the stricter fix: ``schemas/events.py``.)

What JSON Schema cannot say, so only the Python consumer refuses it (``schemas.serde.decode``):

- a float must be finite: JSON has no NaN or Infinity, but several parsers (Python's among them) read
  ``NaN`` / ``Infinity`` tokens as numbers that ``"type": "number"`` accepts;
- ``created_at`` must carry a timezone and lie between 1970 and 9999 (``"format": "date-time"`` is an
  annotation that validators check only with a format checker, and none checks the range);
- the model validators across fields: an assistant turn's logprobs and token ids have one length and
  point at an assistant message; a training example's ids and model ids agree; an adapter update's
  version, ``uri``, ``files``, ``stage`` and gate decision fit together; an update's HMAC signature;
- the size limit of one record (``MC_MAX_EVENT_BYTES``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.dead_letter import DeadLetter
from schemas.events import AdapterUpdate, PredictionEvent, RewardEvent, TrainingExample
from schemas.topics import KEY_FIELDS, TopicKey

__all__ = ["DIALECT", "SCHEMA_DIR", "TOPIC_MODELS", "export_schemas", "json_schema", "schema_files", "stale_files"]

#: the JSON Schema dialect pydantic writes
DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: where the committed (and shipped) schema files live
SCHEMA_DIR = Path(__file__).parent / "json"

#: the record type published on each topic of the contract
TOPIC_MODELS: dict[TopicKey, type[BaseModel]] = {
    TopicKey.PREDICTIONS: PredictionEvent,
    TopicKey.REWARDS: RewardEvent,
    TopicKey.TRAINING_EXAMPLES: TrainingExample,
    TopicKey.ADAPTER_UPDATES: AdapterUpdate,
    TopicKey.DEAD_LETTERS: DeadLetter,
}

#: fields the wire format requires although the model has a default for them (see the module docstring)
_ALWAYS_WRITTEN: dict[str, tuple[str, ...]] = {
    "PredictionEvent": ("schema_version", "created_at", "prediction_id"),
    "RewardEvent": ("schema_version", "created_at", "reward_id"),
    "TrainingExample": ("schema_version", "created_at", "example_id"),
    "AdapterUpdate": ("schema_version", "created_at", "update_id"),
    "DeadLetter": ("schema_version", "created_at", "dead_letter_id"),
}

_KEY_DOC = {
    "record_key": "model_id for live updates, '{model_id}/{stage}' for candidate and canary updates",
}


def _require(schema: dict[str, Any], names: tuple[str, ...]) -> None:
    required = list(schema.get("required", []))
    required += [n for n in names if n in schema.get("properties", {}) and n not in required]
    schema["required"] = required


def json_schema(topic: TopicKey) -> dict[str, Any]:
    """The JSON Schema of the records on ``topic`` (a dict, ready for ``json.dumps``)."""
    model = TOPIC_MODELS[topic]
    schema = model.model_json_schema(mode="validation")
    _require(schema, _ALWAYS_WRITTEN.get(model.__name__, ()))
    # Nested events (a training example's prediction and reward) are written whole by the processor.
    for name, sub in schema.get("$defs", {}).items():
        _require(sub, _ALWAYS_WRITTEN.get(name, ()))
    key_field = KEY_FIELDS.get(topic)
    if key_field is None:
        key_doc = "the key of the refused record, unchanged"
    else:
        key_doc = _KEY_DOC.get(key_field, f"the UTF-8 bytes of the event's {key_field}")
    header = {
        "$schema": DIALECT,
        "$id": f"urn:maximum-continual:schema:v1:{model.__name__}",
    }
    # x-mc-* keywords are annotations for people and code generators; validators ignore them.
    extra = {
        "x-mc-topic": topic.value,
        "x-mc-record-key": key_doc,
        "x-mc-partitioner": "murmur2 (Kafka's Java default; librdkafka: partitioner=murmur2_random)",
    }
    return {**header, **schema, **extra}


def schema_files() -> dict[str, str]:
    """File name -> file text of every schema, as ``export_schemas`` writes them."""
    return {
        f"{TOPIC_MODELS[topic].__name__}.schema.json": json.dumps(json_schema(topic), indent=2, sort_keys=False) + "\n"
        for topic in TOPIC_MODELS
    }


def export_schemas(out_dir: Path) -> list[Path]:
    """Write every schema under ``out_dir`` (created if needed); the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_files().items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files in ``directory`` that are missing or differ from what the models generate."""
    stale = []
    for name, text in schema_files().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
