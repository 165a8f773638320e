"""One live prediction: a prompt through ``SDK.predict`` (served by the node's live adapter), its
reward sent with ``update`` right away, as a production app would.

Every prediction runs the real loop: the SDK's agent asks the inference node (``model=<model_id>``),
the node answers with the live adapter and names its version (``metadata["adapter_version"]``), the
code runs in the SDK's sandbox, ``final_answer`` must validate as the spec's model, and the
PredictionEvent goes to Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from demo.settings import DemoSettings
from demo.spec import TaskSpec, TaskT
from maximum_continual import MessageT, PredictionResponseT, PredictionResponseWithRewardT

__all__ = ["Predictor", "Sample", "answer", "send_reward"]


class Predictor(Protocol):
    """What the loop uses of a :class:`~maximum_continual.MaximumContinualModel` (tests fake it)."""

    async def apredict(
        self,
        messages: Sequence[MessageT],
        tools: Sequence[Any] = (),
        additional_authorized_imports: Sequence[str] = (),
        final_answer_model: type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> PredictionResponseT: ...

    async def aupdate(self, predictions: Sequence[PredictionResponseWithRewardT]) -> None: ...


@dataclass(frozen=True, slots=True)
class Sample:
    """One live prompt, answered once: by which version, with what reward, when (unix seconds)."""

    prediction_id: str
    version: int  # the adapter version that answered the first model turn
    reward: float
    started_at: float
    done_at: float
    error: str | None = None  # the agent's failure, if any (a failed run is rewarded like any other)
    kind: str | None = None  # the prompt's kind, for tasks whose prompts have one (see demo.kinds)


async def answer(
    model: Predictor, spec: TaskSpec[TaskT], task: TaskT, settings: DemoSettings
) -> tuple[Sample, PredictionResponseT]:
    """Run ``task`` once on the live adapter and score it with the spec's reward."""
    started = time.time()
    response = await model.apredict(
        [MessageT(role="system", content=spec.system_prompt()), MessageT(role="user", content=spec.user_message(task))],
        tools=spec.tools,
        additional_authorized_imports=spec.authorized_imports,
        final_answer_model=spec.final_answer_model,
        temperature=settings.demo_temperature,
        max_steps=spec.max_steps,
        max_tokens=settings.demo_max_tokens,
    )
    meta = response.metadata or {}
    sample = Sample(
        prediction_id=response.prediction_id,
        version=int(meta.get("adapter_version", 0)),
        reward=spec.reward(task, response.final_response),
        started_at=started,
        done_at=time.time(),
        error=meta.get("error"),
        kind=None if (kind := getattr(task, "kind", None)) is None else str(kind),
    )
    return sample, response


async def send_reward(
    model: Predictor, response: PredictionResponseT, sample: Sample, source: str, reward: float | None = None
) -> None:
    """One RewardEvent for the prediction (acknowledged by Kafka when this returns): ``reward``, or
    the sample's own when it is None (a benchmark may send another reward than it measures)."""
    sent = sample.reward if reward is None else reward
    await model.aupdate([PredictionResponseWithRewardT(prediction=response, reward=sent, source=source)])
