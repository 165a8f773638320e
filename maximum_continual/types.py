"""The SDK's data types: the seed README's ``MessageT``, ``PredictionResponseT``, ``PredictionResponseWithRewardT``.

``MessageT`` *is* the contract's :class:`schemas.events.Message` (and ``ToolCallT`` its ``ToolCall``):
what the app passes in is what lands in the PredictionEvent, with nothing to convert or drift.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, SerializeAsAny

from schemas.events import Message, ToolCall

__all__ = ["FreeFormAnswer", "MessageT", "PredictionResponseT", "PredictionResponseWithRewardT", "ToolCallT"]

MessageT = Message
ToolCallT = ToolCall


class FreeFormAnswer(BaseModel):
    """The final response when ``predict`` got no ``final_answer_model``: whatever final_answer received."""

    answer: Any


class PredictionResponseT(BaseModel):
    """What ``predict`` returns.

    ``final_response`` is an instance of the ``final_answer_model`` (``None`` when the agent failed:
    step limit, or the model never gave a valid answer; ``metadata["error"]`` says why). ``metadata``
    holds ``prediction_id`` (what rewards refer to), ``model_id``, ``adapter_version`` and timings.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    final_response: SerializeAsAny[BaseModel] | None
    messages: list[MessageT]
    metadata: dict[str, Any] | None = None

    @property
    def prediction_id(self) -> str:
        if not self.metadata or "prediction_id" not in self.metadata:
            raise ValueError("this response carries no prediction_id in its metadata")
        return str(self.metadata["prediction_id"])


class PredictionResponseWithRewardT(BaseModel):
    """A prediction and the reward the app gives it (finite); ``source``/``comment`` are optional."""

    prediction: PredictionResponseT
    reward: FiniteFloat
    source: str | None = Field(None, max_length=256)
    comment: str | None = Field(None, max_length=4096)
