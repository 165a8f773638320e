"""``Tool``: the seed's tool definition (name, description, inputs, output_type, forward).

It is smolagents' ``Tool``, so the attributes are validated the same way and the tool renders as a
Python function signature in the system prompt; inside the sandbox it is called as ``name(...)``.
"""

from __future__ import annotations

from typing import Any

from smolagents import Tool as _SmolTool

__all__ = ["Tool", "tool_signature"]


class Tool(_SmolTool):  # type: ignore[misc]  # smolagents is untyped
    """Subclass and set ``name``, ``description``, ``inputs``, ``output_type`` and ``forward``."""


def tool_signature(tool: Any) -> str:
    """How the tool is shown to the model: a Python ``def`` with its docstring."""
    return str(tool.to_code_prompt())
