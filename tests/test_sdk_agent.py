"""The agent loop's mechanics, deterministic: scripted model outputs through the LLMClient interface."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence

import pytest
from pydantic import BaseModel

import maximum_continual
from maximum_continual import Tool
from maximum_continual.agent import AgentConfig, parse_code, run_agent
from maximum_continual.llm import Completion, parse_completion
from maximum_continual.system_prompt import expand_examples, fetch_default_system_prompt
from maximum_continual.types import FreeFormAnswer, MessageT
from schemas.events import Message


class ScriptedLLM:
    """Answers with the given texts in order; remembers every prompt it got."""

    def __init__(self, outputs: Sequence[str]) -> None:
        self.outputs = list(outputs)
        self.prompts: list[list[Message]] = []
        self.sessions: list[str | None] = []

    async def complete(self, messages, *, model, max_tokens, temperature, stop, session=None) -> Completion:
        self.prompts.append(list(messages))
        self.sessions.append(session)
        text = self.outputs.pop(0)
        ids = list(range(len(text.split())))
        return Completion(text, ids, [-0.5] * len(ids), "stop", adapter_version=3)

    async def aclose(self) -> None:
        pass


class FinalAnswer(BaseModel):
    answer: str
    reasoning: str


class Adder(Tool):
    name = "add"
    description = "Adds two integers"
    inputs = {"a": {"type": "integer", "description": "first"}, "b": {"type": "integer", "description": "second"}}
    output_type = "integer"

    def forward(self, a: int, b: int) -> int:
        return a + b


def code(body: str) -> str:
    return f"Let me think.\n```python\n{body}\n```"


def run(outputs, *, tools=(), imports=(), model=FinalAnswer, max_steps=6, step_timeout_s=5.0):
    llm = ScriptedLLM(outputs)
    msgs = [
        MessageT(role="system", content=fetch_default_system_prompt(tools, imports, model)),
        MessageT(role="user", content="task"),
    ]
    config = AgentConfig(model="m", max_steps=max_steps, step_timeout_s=step_timeout_s)
    result = asyncio.run(
        run_agent(llm, msgs, config, tools=tools, authorized_imports=imports, final_answer_model=model)
    )
    return result, llm


def observations(result) -> list[str]:
    """The observations of this run (after the task; the examples before it have their own)."""
    start = next(i for i, m in enumerate(result.messages) if m.role == "user" and m.content == "task")
    return [m.content for m in result.messages[start:] if m.role == "user" and m.content.startswith("Observation:")]


def test_parse_code():
    assert parse_code("a\n```python\nx = 1\n```\nb") == "x = 1"
    assert parse_code("```py\nx = 1\n```\n```python\ny = 2\n```") == "x = 1\n\ny = 2"
    assert parse_code("```\nz = 3\n```") == "z = 3"
    assert parse_code("```python\nunclosed = 1\n") == "unclosed = 1"
    assert parse_code("no code here") is None


def test_variables_persist_tools_run_and_final_answer_validates():
    result, llm = run(
        [
            code("x = add(a=2, b=3)\nprint('sum', x)"),
            code("final_answer(answer=str(x * 10), reasoning='added then multiplied')"),
        ],
        tools=[Adder()],
    )
    assert result.final == FinalAnswer(answer="50", reasoning="added then multiplied")
    # one id for every turn of the run (the node's canary routes the whole run by it), a new one per run
    assert len(llm.sessions) == 2 and llm.sessions[0] and llm.sessions[0] == llm.sessions[1]
    _, again = run([code("final_answer(answer='1', reasoning='r')")])
    assert again.sessions[0] not in (None, llm.sessions[0])
    assert result.error is None
    obs = observations(result)
    assert obs[-1].startswith("Observation:\nExecution logs:\nsum 5")
    assert len(result.turns) == 2 and result.adapter_versions == [3, 3]
    for turn in result.turns:
        assert result.messages[turn.message_index].role == "assistant"
        assert len(turn.completion_token_ids) == len(turn.completion_logprobs) > 0
    # the model saw the examples as chat turns, then the task, then its own step and the observation
    roles = [m.role for m in llm.prompts[1]]
    assert roles[:3] == ["system", "user", "assistant"] and roles[-2:] == ["assistant", "user"]


def test_validation_error_goes_back_as_an_observation():
    result, _ = run(
        [
            code("final_answer(answer='5')"),
            code("final_answer(answer='5', reasoning='fixed')"),
        ]
    )
    assert result.final == FinalAnswer(answer="5", reasoning="fixed")
    (obs,) = observations(result)
    assert "final_answer was rejected" in obs and "reasoning" in obs and "Field required" in obs


def test_positional_and_free_form_answers():
    class Only(BaseModel):
        value: int

    result, _ = run([code("final_answer(7)")], model=Only)
    assert result.final == Only(value=7)
    result, _ = run([code("final_answer({'answer': 'a', 'reasoning': 'r'})")])
    assert result.final == FinalAnswer(answer="a", reasoning="r")
    result, _ = run([code("final_answer('anything')")], model=None)
    assert result.final == FreeFormAnswer(answer="anything")


def test_step_limit():
    result, llm = run([code("print('still going')")] * 3, max_steps=3)
    assert result.final is None and "step limit" in (result.error or "")
    assert len(result.turns) == 3 and len(observations(result)) == 3 and not llm.outputs


def test_no_code_block_is_an_observation():
    result, _ = run(["I will just talk.", code("final_answer(answer='1', reasoning='r')")])
    assert "no code found" in observations(result)[0]
    assert result.final is not None


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("import subprocess", "Import of subprocess is not allowed"),
        ("import socket\nsocket.socket()", "Import of socket is not allowed"),
        ("import urllib.request", "Import of urllib.request is not allowed"),
        ("open('/etc/passwd').read()", "Forbidden function evaluation: 'open'"),
        ("import os", "Import of os is not allowed"),
        ("1 / 0", "ZeroDivisionError"),
    ],
)
def test_sandbox_refusals_are_observations(snippet, expected):
    result, _ = run([code(snippet), code("final_answer(answer='ok', reasoning='r')")])
    obs = observations(result)[0]
    assert "Error:" in obs and expected in obs, obs
    assert result.final is not None  # the run went on after the refusal


def test_authorized_import_is_allowed():
    result, _ = run(
        [code("import json\nprint(json.dumps([1]))"), code("final_answer(answer='x', reasoning='r')")], imports=["json"]
    )
    assert "[1]" in observations(result)[0] and "Error" not in observations(result)[0]


def test_endless_loop_hits_the_step_time_limit():
    result, _ = run(
        [code("n = 0\nwhile True:\n    n += 1"), code("final_answer(answer=str(n > 0), reasoning='r')")],
        step_timeout_s=1.0,
    )
    obs = observations(result)[0]
    assert "TimeoutError" in obs and "per-step limit of 1 s" in obs
    assert result.final == FinalAnswer(answer="True", reasoning="r")  # the state survived the stop


def test_default_system_prompt_has_tools_imports_fields_and_examples():
    prompt = fetch_default_system_prompt([Adder()], authorized_imports=["json"], final_answer_model=FinalAnswer)
    assert "def add(a: integer, b: integer) -> integer" in prompt
    assert "json" in prompt and "answer (string), reasoning (string)" in prompt
    expanded = expand_examples([MessageT(role="system", content=prompt), MessageT(role="user", content="t")])
    assert [m.role for m in expanded] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "<example>" not in expanded[0].content
    assert all(parse_code(m.content) for m in expanded if m.role == "assistant")
    assert "final_answer(answer=str(result)" in expanded[2].content
    assert "found = add(a='Python')" in expanded[4].content  # the example uses the app's own tool


def test_parse_completion_reads_token_ids_logprobs_and_version():
    body = {
        "choices": [
            {
                "message": {"content": "hi"},
                "finish_reason": "stop",
                "logprobs": {
                    "content": [
                        {"token": "token_id:12", "logprob": -0.25},
                        {"token": "token_id:7", "logprob": float("-inf")},
                    ]
                },
            }
        ],
        "mc_adapter_version": 4,
    }
    c = parse_completion(body, None)
    assert (c.text, c.token_ids, c.finish_reason, c.adapter_version) == ("hi", [12, 7], "stop", 4)
    assert c.logprobs == [-0.25, -1.0e4]
    assert parse_completion(body, "5").adapter_version == 5


def test_public_api_is_pinned():
    assert sorted(maximum_continual.__all__) == sorted(
        name for name in dir(maximum_continual) if not name.startswith("_") and name[0].isupper()
    )
    assert {"MaximumContinual", "Tool", "MessageT", "PredictionResponseT", "PredictionResponseWithRewardT"} <= set(
        maximum_continual.__all__
    )
    assert MessageT is Message


def test_sdk_imports_without_torch_or_vllm():
    script = (
        "import sys\nsys.modules['torch'] = None\nsys.modules['vllm'] = None\n"
        "import maximum_continual, maximum_continual.agent, maximum_continual.client, maximum_continual.deploy\n"
        "from maximum_continual.system_prompt import fetch_default_system_prompt\n"
        "from maximum_continual.types import PredictionResponseWithRewardT\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
