"""``MaximumContinualModel``: ``predict`` runs the agent loop and publishes a PredictionEvent;
``update`` publishes the app's rewards as RewardEvents."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from maximum_continual.agent import AgentConfig, run_agent
from maximum_continual.types import MessageT, PredictionResponseT, PredictionResponseWithRewardT
from schemas.events import PredictionEvent, RewardEvent, new_id

if TYPE_CHECKING:
    from maximum_continual.client import MaximumContinual

__all__ = ["MaximumContinualModel"]

T = TypeVar("T")

#: predict's keyword arguments that tune one run (defaults come from the client's settings)
_RUN_OPTIONS = (
    "max_steps",
    "step_timeout_s",
    "max_tokens",
    "temperature",
    "max_print_chars",
    "sandbox_memory_mib",
    "sandbox_cpu_s",
    "allow_unsafe_imports",
)


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # e.g. called from a notebook
        return pool.submit(asyncio.run, coro).result()


class MaximumContinualModel:
    """One model_id of a :class:`~maximum_continual.MaximumContinual` client. Use as a context manager."""

    def __init__(self, client: MaximumContinual, model_id: str) -> None:
        self.client = client
        self.model_id = model_id

    # -- predict --------------------------------------------------------------------------------

    def predict(
        self,
        messages: Sequence[MessageT],
        tools: Sequence[Any] = (),
        additional_authorized_imports: Sequence[str] = (),
        final_answer_model: type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> PredictionResponseT:
        """Run the agent on ``messages`` until a valid final answer or the step limit.

        ``kwargs``: ``max_steps``, ``step_timeout_s``, ``max_tokens``, ``temperature``,
        ``max_print_chars``, ``sandbox_memory_mib``, ``sandbox_cpu_s``, ``allow_unsafe_imports``
        (defaults from the client's settings). A failed run still returns (with
        ``final_response=None`` and ``metadata["error"]``) and is published, so it can be rewarded.

        The agent's code runs in a separate process per call. ``additional_authorized_imports`` that
        name a module on the sandbox's deny list (``os``, ``subprocess``, ``socket``, ``"*"``, ...)
        raise :class:`~maximum_continual.sandbox.UnsafeImportError` before any model call, unless
        ``allow_unsafe_imports=True``.
        """
        return _run_sync(self.apredict(messages, tools, additional_authorized_imports, final_answer_model, **kwargs))

    async def apredict(
        self,
        messages: Sequence[MessageT],
        tools: Sequence[Any] = (),
        additional_authorized_imports: Sequence[str] = (),
        final_answer_model: type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> PredictionResponseT:
        unknown = set(kwargs) - set(_RUN_OPTIONS)
        if unknown:
            raise TypeError(f"predict() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        s = self.client.settings
        config = AgentConfig(
            model=self.client.served_model(self.model_id),
            **{name: kwargs.get(name, getattr(s, name)) for name in _RUN_OPTIONS},
        )
        llm = self.client.llm()
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
        version = run.adapter_versions[0] if run.adapter_versions else 0
        event = PredictionEvent(
            prediction_id=new_id(),
            model_id=self.model_id,
            base_model=s.base_model_name,
            adapter_version=version,
            messages=run.messages,
            final_answer=run.final.model_dump(mode="json") if run.final else None,
            error=run.error,
            turns=run.turns,
            timings=run.timings,
        )
        delivery = await asyncio.wait_for(self.client.publisher().apublish_prediction(event), s.publish_timeout_s)
        metadata = {
            "prediction_id": event.prediction_id,
            "model_id": self.model_id,
            "adapter_version": version,
            "adapter_versions": run.adapter_versions,
            "steps": len(run.turns),
            "error": run.error,
            "timings": run.timings,
            "delivery": {"topic": delivery.topic, "partition": delivery.partition, "offset": delivery.offset},
        }
        return PredictionResponseT(final_response=run.final, messages=run.messages, metadata=metadata)

    # -- update ---------------------------------------------------------------------------------

    def update(self, predictions: Sequence[PredictionResponseWithRewardT]) -> None:
        """Publish one RewardEvent per prediction and wait until Kafka acknowledged all of them."""
        _run_sync(self.aupdate(predictions))

    async def aupdate(self, predictions: Sequence[PredictionResponseWithRewardT]) -> None:
        publisher = self.client.publisher()
        events = [
            RewardEvent(
                prediction_id=p.prediction.prediction_id,
                model_id=self.model_id,
                reward=p.reward,
                source=p.source or "sdk",
                comment=p.comment,
            )
            for p in predictions
        ]
        await asyncio.wait_for(
            asyncio.gather(*(publisher.apublish_reward(event) for event in events)),
            self.client.settings.publish_timeout_s,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> MaximumContinualModel:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.client.flush()

    async def __aenter__(self) -> MaximumContinualModel:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.client.flush)
