"""``mc bench learn --base N``: each task's solve rate by the base model, without training; with
``--adapter LABEL=PATH``, by saved adapters too, overall and by the task's kind of prompt.

The same prediction as the live loop's (:func:`demo.workload.answer`: the spec's prompt, tools,
final-answer model, temperature, tokens and steps) against vLLM directly. It publishes nothing: no
processor, trainer, node or Kafka event. What it measures for the base model is what version 0 answers
in a live run, on the same prompt stream. For an adapter (a version folder a node or trainer wrote,
e.g. ``.mc/demo/<run>/node-adapters/<model>/v27``) it shows what training did to each kind of prompt:
the live reward pools the kinds, so an adapter that solves additions better and subtractions worse can
look as good as one that improved both.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from demo.kinds import rewards_by_kind
from demo.settings import DemoSettings
from demo.spec import TaskSpec, TaskT
from demo.stats import Score, score
from demo.workload import Sample, answer
from inference.vllm_client import VllmClient
from maximum_continual import MessageT, PredictionResponseT, PredictionResponseWithRewardT
from maximum_continual.agent import AgentConfig, run_agent
from maximum_continual.llm import OpenAIChatClient
from schemas.events import new_id

__all__ = ["ADAPTER_PREFIX", "BasePredictor", "load_adapters", "measure_kinds", "scores_by_kind"]

#: vLLM name of a probed adapter: the prefix and its label (never a name a node serves)
ADAPTER_PREFIX = "probe-"


class BasePredictor:
    """A :class:`~demo.workload.Predictor` on vLLM's base model (or a ``model`` vLLM serves by name, such as
    a loaded adapter) that publishes nothing."""

    def __init__(self, settings: DemoSettings, model: str | None = None) -> None:
        self.s = settings
        self.model = model or settings.base_model_name

    async def apredict(
        self,
        messages: Sequence[MessageT],
        tools: Sequence[Any] = (),
        additional_authorized_imports: Sequence[str] = (),
        final_answer_model: type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> PredictionResponseT:
        config = AgentConfig(model=self.model, **kwargs)
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


async def load_adapters(settings: DemoSettings, adapters: Mapping[str, str]) -> dict[str, str]:
    """Load each ``label -> folder`` into vLLM as ``probe-<label>`` (a name loaded before is replaced, so
    a label always means the folder given now); returns ``label -> served name``."""
    client = VllmClient(
        settings.vllm_url, request_timeout_s=60.0, admin_timeout_s=60.0, headers=settings.vllm_headers()
    )
    names: dict[str, str] = {}
    try:
        for label, path in adapters.items():
            name = f"{ADAPTER_PREFIX}{label}"
            await client.unload(name)
            await client.load(name, path)
            names[label] = name
    finally:
        await client.aclose()
    return names


async def measure_kinds(
    spec: TaskSpec[TaskT], settings: DemoSettings, n: int, *, model: str | None = None, concurrency: int = 8
) -> dict[str, Score]:
    """The reward on the first ``n`` prompts of the spec's stream (``demo_seed``) by ``model`` (default: the
    base model): over all of them (``"all"``) and by the prompt's ``kind``, for tasks whose prompts have one."""
    predictor = BasePredictor(settings, model)
    gate = asyncio.Semaphore(concurrency)

    async def one(task: TaskT) -> Sample:
        async with gate:
            sample, _ = await answer(predictor, spec, task, settings)
            return sample

    tasks = list(itertools.islice(spec.prompts(settings.demo_seed), n))
    return scores_by_kind(await asyncio.gather(*(one(t) for t in tasks)))


def scores_by_kind(samples: Sequence[Sample]) -> dict[str, Score]:
    """``"all"``: every sample's reward; then one score per kind (samples without a kind count in "all" only)."""
    kinds = rewards_by_kind(samples)
    return {"all": score([s.reward for s in samples]), **{k: score(v) for k, v in kinds.items()}}
