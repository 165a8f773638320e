"""``fetch_default_system_prompt``: the instructions, tools, imports and final-answer fields the agent sees.

A 135M model writes code only when it has seen the format (STACK.md), so the prompt ends with two
short worked examples in exactly the format the loop parses: a ```python block that ends in
``final_answer(...)`` with the fields of the app's ``final_answer_model``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from smolagents.utils import BASE_BUILTIN_MODULES

from maximum_continual.tools import tool_signature
from schemas.events import Message

__all__ = [
    "OBSERVATION_PREFIX",
    "expand_examples",
    "fetch_default_system_prompt",
    "final_answer_fields",
    "render_example",
]

#: how the agent loop starts the user message that carries a step's output back to the model
OBSERVATION_PREFIX = "Observation:\n"
_EXAMPLE = re.compile(r"<example>\n(.*?)\n</example>", re.DOTALL)
_TURN = re.compile(r"<(user|assistant)>\n(.*?)\n</\1>", re.DOTALL)

_INTRO = """You are an assistant that solves tasks by writing Python code.
Answer every task with one Python code block, like this:
```python
# your code
```
The code runs in a Python interpreter. What it prints comes back to you as an Observation, and
variables persist between steps. When you know the answer, call final_answer(...) in your code.
Only the functions and modules listed below exist."""


def render_example(turns: Sequence[tuple[str, str]]) -> str:
    """An in-format example, written so :func:`expand_examples` can turn it into chat turns."""
    body = "\n".join(f"<{role}>\n{text}\n</{role}>" for role, text in turns)
    return f"<example>\n{body}\n</example>"


def expand_examples(messages: Sequence[Message]) -> list[Message]:
    """Move the ``<example>`` blocks of a system message into chat turns right after it.

    The small model follows examples only when they are real chat turns, not text in the system
    prompt (checked on SmolLM2-135M: no code at all from the text form, code from the turn form).
    The trajectory records the expanded messages: the exact prompt the model was sampled with.
    """
    out: list[Message] = []
    for message in messages:
        blocks = _EXAMPLE.findall(message.content) if message.role == "system" else []
        if not blocks:
            out.append(message)
            continue
        text = re.sub(r"\n*" + _EXAMPLE.pattern + r"\n*", "\n\n", message.content, flags=re.DOTALL).strip()
        out.append(Message(role="system", content=text))
        for block in blocks:
            out += [Message(role=role, content=content) for role, content in _TURN.findall(block)]
    return out


def final_answer_fields(final_answer_model: type[BaseModel] | None) -> dict[str, str]:
    """Field name -> JSON type of the final answer (``{"answer": "any"}`` without a model)."""
    if final_answer_model is None:
        return {"answer": "any"}
    props: dict[str, Any] = final_answer_model.model_json_schema().get("properties", {})
    return {name: str(spec.get("type", "any")) for name, spec in props.items()}


def _example_value(name: str, kind: str, value: str, why: str) -> str:
    if any(word in name.lower() for word in ("reason", "explan", "why", "rationale")):
        return json.dumps(why)
    if kind == "string":
        return f"str({value})"
    if kind == "integer":
        return f"int({value})"
    if kind == "number":
        return f"float({value})"
    if kind == "boolean":
        return "True"
    return value


def _final_call(fields: dict[str, str], value: str, why: str) -> str:
    args = ", ".join(f"{name}={_example_value(name, kind, value, why)}" for name, kind in fields.items())
    return f"final_answer({args})"


def fetch_default_system_prompt(
    tools: Sequence[Any] = (),
    additional_authorized_imports: Sequence[str] = (),
    final_answer_model: type[BaseModel] | None = None,
    *,
    authorized_imports: Sequence[str] | None = None,
) -> str:
    """The default system prompt for ``tools``, the authorized imports and ``final_answer_model``.

    ``authorized_imports`` is accepted as another name of ``additional_authorized_imports`` (the
    seed README uses both).
    """
    imports = list(additional_authorized_imports) + list(authorized_imports or ())
    fields = final_answer_fields(final_answer_model)
    parts = [_INTRO, ""]
    if tools:
        parts.append("Functions you can call:")
        parts += [tool_signature(tool) for tool in tools]
        parts.append("")
    modules = sorted(set(BASE_BUILTIN_MODULES) | set(imports))
    parts.append(f"Modules you may import: {', '.join(modules)}.")
    field_list = ", ".join(f"{name} ({kind})" for name, kind in fields.items())
    parts.append(f"final_answer takes these keyword arguments: {field_list}.")
    parts.append("")
    parts.append("Examples of the format follow (each is a task, your code, and what it printed).")
    parts.append(
        render_example(
            [
                ("user", "What is 17 times 23?"),
                (
                    "assistant",
                    f"```python\nresult = 17 * 23\n{_final_call(fields, 'result', 'I multiplied 17 by 23.')}\n```",
                ),
            ]
        )
    )
    if tools:  # show a call of the app's own first tool: the small model copies what it sees
        first = tools[0]
        arg = next(iter(first.inputs), None)
        call = f"{first.name}({arg}='Python')" if arg else f"{first.name}()"
        parts.append(
            render_example(
                [
                    ("user", f"Use {first.name} to find out about Python."),
                    (
                        "assistant",
                        f"```python\nfound = {call}\nprint(found)\n"
                        f"{_final_call(fields, 'found', f'I called {first.name} and used what it returned.')}\n```",
                    ),
                ]
            )
        )
    else:
        parts.append(
            render_example(
                [
                    ("user", "How many letters are in the word 'continual'?"),
                    (
                        "assistant",
                        "```python\ncount = len('continual')\nprint(count)\n"
                        f"{_final_call(fields, 'count', 'I counted the letters with len().')}\n```",
                    ),
                ]
            )
        )
    return "\n".join(parts)
