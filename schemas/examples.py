"""A :class:`~schemas.events.TrainingExample`'s JSON built around its two events' original bytes.

The stream processor emits one example per joined reward; validating and re-encoding the prediction
(the whole trajectory) for each would cost more than the join itself. The two events were validated
when they were read, so the example is assembled as text around their bytes, field for field what
``encode(TrainingExample.join(prediction, reward))`` would hold (``tests/test_examples.py`` decodes
one against the other), except ``created_at``: the caller passes the later of the two events' times,
so that a re-emission after a crash carries the same bytes.
"""

from __future__ import annotations

import json

from schemas.events import SCHEMA_VERSION

__all__ = ["training_example_json"]


def training_example_json(model_id: str, example_id: str, created_at: str, prediction: bytes, reward: bytes) -> bytes:
    """The example's JSON: ``prediction`` and ``reward`` are the events' validated UTF-8 JSON bytes,
    ``created_at`` an ISO 8601 time with its offset, ``example_id`` the reward's id."""
    head = (
        f'{{"schema_version":{SCHEMA_VERSION},"model_id":{json.dumps(model_id)},"created_at":"{created_at}",'
        f'"example_id":{json.dumps(example_id)},"prediction":'
    )
    return b"".join((head.encode(), prediction, b',"reward":', reward, b"}"))
