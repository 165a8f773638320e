"""The agent loop: the model writes Python, the sandbox runs it, the output goes back, until
``final_answer(...)`` passes validation or the step limit is reached.

Each step is one model turn (an assistant message, recorded with its token ids and logprobs) and,
unless it ended the run, one observation (a user message starting with ``Observation:``) carrying
what the code printed, the value of its last line, or the error: no code block, an exception, a
sandbox refusal, a timeout, or a final answer that failed validation against the app's model.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from maximum_continual.llm import InferenceError, LLMClient
from maximum_continual.sandbox import FinalCall, SandboxExecutor, SandboxLimits, StepOutcome
from maximum_continual.sandbox.limits import DEFAULT_CPU_S, DEFAULT_MEMORY_MIB
from maximum_continual.system_prompt import OBSERVATION_PREFIX, expand_examples
from maximum_continual.types import FreeFormAnswer
from schemas.events import AssistantTurn, Message

__all__ = ["AgentConfig", "AgentRun", "FinalAnswerRejected", "parse_code", "run_agent", "validate_final_answer"]

_CODE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
#: the model must not write the observation itself
STOP = ("Observation:",)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    model: str
    max_steps: int = 6
    step_timeout_s: float = 10.0
    max_tokens: int = 384
    temperature: float = 0.7
    max_print_chars: int = 4000
    sandbox_memory_mib: int = DEFAULT_MEMORY_MIB
    sandbox_cpu_s: int = DEFAULT_CPU_S
    allow_unsafe_imports: bool = False


@dataclass
class AgentRun:
    messages: list[Message]
    turns: list[AssistantTurn] = field(default_factory=list)
    final: BaseModel | None = None
    error: str | None = None
    adapter_versions: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class FinalAnswerRejected(ValueError):
    """final_answer's arguments do not make a valid final answer."""


def parse_code(text: str) -> str | None:
    """The code of every ```python block in ``text`` (an unclosed last block counts), or None."""
    blocks = [block.strip() for block in _CODE.findall(text)]
    code = "\n\n".join(block for block in blocks if block)
    return code or None


def validate_final_answer(call: FinalCall, model: type[BaseModel] | None) -> BaseModel:
    """Build the final answer from final_answer's arguments; raise :class:`FinalAnswerRejected`."""
    args, kwargs = call.args, call.kwargs
    if model is None:
        if kwargs and not args:
            return FreeFormAnswer(answer=kwargs.get("answer", kwargs) if len(kwargs) == 1 else kwargs)
        return FreeFormAnswer(answer=args[0] if len(args) == 1 and not kwargs else [*args, kwargs])
    if (args and kwargs) or len(args) > 1:
        raise FinalAnswerRejected("pass the fields of the final answer as keyword arguments only")
    data: Any = kwargs
    if args:
        (value,) = args
        if isinstance(value, model):
            return value
        if isinstance(value, BaseModel):
            data = value.model_dump()
        elif isinstance(value, dict):
            data = value
        elif len(model.model_fields) == 1:
            data = {next(iter(model.model_fields)): value}
        else:
            fields = ", ".join(f"{name}=..." for name in model.model_fields)
            raise FinalAnswerRejected(f"final_answer needs keyword arguments: final_answer({fields})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(answer)'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        fields = ", ".join(f"{name}=..." for name in model.model_fields)
        raise FinalAnswerRejected(f"{problems}. Call final_answer({fields}) again with valid values.") from None


def _observation(outcome: StepOutcome) -> str:
    parts = []
    if outcome.logs.strip():
        parts.append(f"Execution logs:\n{outcome.logs.rstrip()}")
    if outcome.error is not None:
        parts.append(f"Error: {outcome.error}")
    elif outcome.output is not None:
        parts.append(f"Last output from code snippet:\n{outcome.output!r}")
    return "\n".join(parts) or "The code ran and printed nothing."


async def run_agent(
    llm: LLMClient,
    messages: Sequence[Message],
    config: AgentConfig,
    *,
    tools: Sequence[Any] = (),
    authorized_imports: Sequence[str] = (),
    final_answer_model: type[BaseModel] | None = None,
) -> AgentRun:
    t_start = time.perf_counter()
    run = AgentRun(messages=expand_examples(messages))
    # every turn of this run carries one id: a node running a canary answers the run with one version
    # (its first turn's, which the PredictionEvent names); few-shot turns make the conversation's head
    # the same for every run of an app, so it cannot tell runs apart
    session = uuid.uuid4().hex
    llm_s = exec_s = 0.0
    # One sandbox process for the run, started now so it imports while the model writes the first
    # step; closed (killed) on every way out, cancellation included. Refused imports raise here,
    # before any model call.
    with SandboxExecutor(
        tools,
        authorized_imports,
        step_timeout_s=config.step_timeout_s,
        max_print_chars=config.max_print_chars,
        limits=SandboxLimits(memory_mib=config.sandbox_memory_mib, cpu_s=config.sandbox_cpu_s),
        allow_unsafe_imports=config.allow_unsafe_imports,
    ) as executor:
        for _step in range(config.max_steps):
            t0 = time.perf_counter()
            try:
                completion = await llm.complete(
                    run.messages,
                    model=config.model,
                    max_tokens=config.max_tokens,
                    temperature=config.temperature,
                    stop=STOP,
                    session=session,
                )
            except InferenceError as exc:
                if exc.status != 400 or not run.turns:
                    raise  # the endpoint is down or refuses us from the start: the app must know
                run.error = f"the model refused the conversation at step {len(run.turns) + 1}: {exc}"
                break  # e.g. it outgrew the context: a failed run, still worth a reward
            finally:
                llm_s += time.perf_counter() - t0
            run.messages.append(Message(role="assistant", content=completion.text))
            run.turns.append(
                AssistantTurn(
                    message_index=len(run.messages) - 1,
                    completion_token_ids=completion.token_ids,
                    completion_logprobs=completion.logprobs,
                    finish_reason=completion.finish_reason,
                )
            )
            run.adapter_versions.append(completion.adapter_version)
            code = parse_code(completion.text)
            if code is None:
                observation = (
                    "Error: no code found. Answer with a Python code block (```python ... ```) "
                    "and call final_answer(...) in it when you know the answer."
                )
            else:
                t0 = time.perf_counter()
                outcome = await asyncio.to_thread(executor.run, code)
                exec_s += time.perf_counter() - t0
                if outcome.final is not None:
                    try:
                        run.final = validate_final_answer(outcome.final, final_answer_model)
                        break
                    except FinalAnswerRejected as exc:
                        observation = f"Error: final_answer was rejected: {exc}"
                        if outcome.logs.strip():
                            observation = f"Execution logs:\n{outcome.logs.rstrip()}\n{observation}"
                else:
                    observation = _observation(outcome)
            run.messages.append(Message(role="user", content=OBSERVATION_PREFIX + observation))
        else:
            run.error = f"no valid final answer after {config.max_steps} steps (the step limit)"
    run.timings = {"total_s": time.perf_counter() - t_start, "llm_s": llm_s, "exec_s": exec_s}
    return run
