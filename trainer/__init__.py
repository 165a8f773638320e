"""The trainer service: windows of training examples → LoRA adapters in S3 → AdapterUpdate events.

Run it with ``mc trainer`` (or ``python -m trainer``). Imports of torch/transformers/peft happen
only when a model is loaded, so ``import trainer`` is cheap.
"""

from trainer.settings import TrainerSettings

__all__ = ["TrainerSettings"]
