"""The agent workload: problems through ``SDK.predict`` (served by the node's live adapter), scored.

Every prediction runs the real loop: the SDK's agent asks the inference node (``model=<model_id>``),
the node answers with the live adapter and names its version, the code runs in the SDK's sandbox,
``final_answer`` must validate as :class:`~demo.tasks.FinalAnswer`, and the PredictionEvent goes to
Kafka. Only training predictions get rewards (``update``); held-out ones never do, so they are never
joined and never trained on.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from demo.settings import DemoSettings
from demo.tasks import FinalAnswer, Task, reward
from maximum_continual import MaximumContinualModel, MessageT, PredictionResponseT, PredictionResponseWithRewardT
from maximum_continual.system_prompt import render_example

__all__ = ["Sample", "Score", "predict_all", "score", "send_rewards", "system_prompt"]

#: The app's own short system prompt, in the SDK's in-format example style (``render_example``: the
#: SDK turns each block into chat turns). SmolLM2-135M needs the examples to write code at all and a
#: worked word problem to solve any (with the SDK's two generic examples only: reward 0). The SDK's
#: full default prompt works as well (0.25 at T=0.7) but is 349 tokens against 182: the trainer's
#: cost per example on a 2-core CPU is mostly the prompt, so the short one doubles the rounds.
_INTRO = (
    "You solve tasks by writing Python code in one ```python block. "
    "The code must end with final_answer(answer=...), where answer is an integer."
)
_EXAMPLES = (
    (
        ("user", "How many letters are in the word 'continual'?"),
        ("assistant", "```python\ncount = len('continual')\nprint(count)\nfinal_answer(answer=int(count))\n```"),
    ),
    (
        ("user", "Mia has 7 pears and buys 5 more pears. How many pears does Mia have now?"),
        ("assistant", "```python\npears = 7 + 5\nprint(pears)\nfinal_answer(answer=int(pears))\n```"),
    ),
)


def system_prompt() -> str:
    """The agent's system prompt: the instruction and two in-format examples (one a word problem)."""
    return "\n".join([_INTRO, *(render_example(turns) for turns in _EXAMPLES)])


@dataclass(frozen=True, slots=True)
class Sample:
    task: Task
    response: PredictionResponseT
    reward: float

    @property
    def version(self) -> int:
        """The adapter version that served the first model turn."""
        return int((self.response.metadata or {}).get("adapter_version", 0))


@dataclass(frozen=True, slots=True)
class Score:
    mean: float
    stderr: float
    n: int


def score(rewards: Sequence[float]) -> Score:
    """Mean reward and its standard error."""
    n = len(rewards)
    if n == 0:
        return Score(0.0, 0.0, 0)
    mean = sum(rewards) / n
    var = sum((r - mean) ** 2 for r in rewards) / (n - 1) if n > 1 else 0.0
    return Score(mean, math.sqrt(var / n), n)


async def predict_all(
    model: MaximumContinualModel,
    tasks: Sequence[Task],
    settings: DemoSettings,
    prompt: str,
    on_done: Callable[[], None] = lambda: None,
) -> list[Sample]:
    """Run every task through ``predict`` (at most ``demo_concurrency`` at once), in order."""
    limit = asyncio.Semaphore(settings.demo_concurrency)

    async def one(task: Task) -> Sample:
        async with limit:
            response = await model.apredict(
                [MessageT(role="system", content=prompt), MessageT(role="user", content=task.question)],
                final_answer_model=FinalAnswer,
                temperature=settings.demo_temperature,
                max_steps=settings.demo_max_steps,
                max_tokens=settings.demo_max_tokens,
            )
        on_done()
        return Sample(task, response, reward(task, response.final_response))

    return list(await asyncio.gather(*(one(task) for task in tasks)))


async def send_rewards(model: MaximumContinualModel, samples: Sequence[Sample]) -> None:
    """One RewardEvent per sample (acknowledged by Kafka when this returns)."""
    await model.aupdate(
        [PredictionResponseWithRewardT(prediction=s.response, reward=s.reward, source="demo") for s in samples]
    )
