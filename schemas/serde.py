"""Events to bytes and back, with typed errors only.

``decode`` never lets a bare ``json`` / ``UnicodeDecodeError`` / ``pydantic.ValidationError`` escape:
each bad input becomes a :class:`~schemas.errors.SchemaError` subclass that keeps the original bytes,
so a worker can dead-letter them unchanged.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import ValidationError

from schemas.errors import (
    EventTooLargeError,
    InvalidEventError,
    MalformedEventError,
    UnsupportedSchemaVersionError,
)
from schemas.events import SCHEMA_VERSION, Event

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "decode", "encode"]

E = TypeVar("E", bound=Event)

DEFAULT_MAX_EVENT_BYTES = 1_048_576


def encode(event: Event, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> bytes:
    """The event as compact UTF-8 JSON; raises :class:`EventTooLargeError` above ``max_bytes``."""
    data = event.__pydantic_serializer__.to_json(event)
    if len(data) > max_bytes:
        raise EventTooLargeError(
            f"{type(event).__name__} {event.event_id} is {len(data)} bytes, over the {max_bytes}-byte limit"
        )
    return data


def decode(data: bytes | None, model: type[E], *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> E:
    """Parse and validate ``data`` as ``model``; every failure is a typed :class:`SchemaError`."""
    if data is None:
        raise MalformedEventError("empty message (no value)", raw=None)
    if len(data) > max_bytes:
        raise EventTooLargeError(f"{len(data)} bytes, over the {max_bytes}-byte limit", raw=data)
    try:
        obj: Any = json.loads(data)
    except UnicodeDecodeError as exc:
        raise MalformedEventError(f"not UTF-8: {exc}", raw=data) from None
    except ValueError as exc:  # json.JSONDecodeError
        raise MalformedEventError(f"not JSON: {exc}", raw=data) from None
    if not isinstance(obj, dict):
        raise MalformedEventError(f"expected a JSON object, got {type(obj).__name__}", raw=data)
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UnsupportedSchemaVersionError(
            f"schema_version {version!r} is not supported (this code reads {SCHEMA_VERSION})", raw=data
        )
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        errors = [
            {"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
        raise InvalidEventError(
            f"invalid {model.__name__}: {summary}",
            raw=data,
            errors=errors,  # type: ignore[arg-type]
        ) from None
