"""The trainer service: windows of training examples → LoRA adapters in S3 → AdapterUpdate events.

Not built yet (issue: trainer). The contract it implements is in ``schemas``.
"""

__all__: list[str] = []
