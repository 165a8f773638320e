"""The inference node: adapter watcher and OpenAI-compatible proxy in front of vLLM.

Not built yet (issue: inference node and SDK). The contract it implements is in ``schemas``.
"""

__all__: list[str] = []
