"""The faust-streaming worker: joins predictions with rewards into training examples.

Not built yet (issue: stream processor). The contract it implements is in ``schemas``.
"""

__all__: list[str] = []
