"""``mc bench learn --base N``: each task's solve rate by the base model, without training.

The same prediction as the live loop's (:func:`demo.workload.answer`: the spec's prompt, tools,
final-answer model, temperature, tokens and steps) against the base model straight from vLLM. It
starts nothing and publishes nothing: no processor, trainer, node or Kafka event. What it measures is
what version 0 answers in a live run, on the same prompt stream.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from demo.settings import DemoSettings
from demo.spec import TaskSpec, TaskT
from demo.stats import Score, score
from demo.workload import answer
from maximum_continual import MessageT, PredictionResponseT, PredictionResponseWithRewardT
from maximum_continual.agent import AgentConfig, run_agent
from maximum_continual.llm import OpenAIChatClient
from schemas.events import new_id

__all__ = ["BasePredictor", "measure_base"]


class BasePredictor:
    """A :class:`~demo.workload.Predictor` on vLLM's base model that publishes nothing."""

    def __init__(self, settings: DemoSettings) -> None:
        self.s = settings

    async def apredict(
        self,
        messages: Sequence[MessageT],
        tools: Sequence[Any] = (),
        additional_authorized_imports: Sequence[str] = (),
        final_answer_model: type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> PredictionResponseT:
        config = AgentConfig(model=self.s.base_model_name, **kwargs)
        key = self.s.vllm_api_key.get_secret_value() if self.s.vllm_api_key else None
        llm = OpenAIChatClient(self.s.vllm_url, api_key=key)
        try:
            run = await run_agent(
                llm,
                list(messages),
                config,
                tools=tools,
                authorized_imports=additional_authorized_imports,
                final_answer_model=final_answer_model,
            )
        finally:
            await llm.aclose()
        meta = {"prediction_id": new_id(), "adapter_version": 0, "error": run.error}
        return PredictionResponseT(final_response=run.final, messages=run.messages, metadata=meta)

    async def aupdate(self, predictions: Sequence[PredictionResponseWithRewardT]) -> None:
        """Nothing to send: the base rate trains nothing."""


async def measure_base(spec: TaskSpec[TaskT], settings: DemoSettings, n: int, *, concurrency: int = 8) -> Score:
    """The base model's reward on the first ``n`` prompts of the spec's stream (``demo_seed``)."""
    model = BasePredictor(settings)
    gate = asyncio.Semaphore(concurrency)

    async def one(task: TaskT) -> float:
        async with gate:
            sample, _ = await answer(model, spec, task, settings)
            return sample.reward

    tasks = list(itertools.islice(spec.prompts(settings.demo_seed), n))
    return score(await asyncio.gather(*(one(t) for t in tasks)))
