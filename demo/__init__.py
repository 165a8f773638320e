"""The end-to-end learning demo (``mc demo``): arithmetic word problems through the whole loop.

The SDK's agent answers through an inference node; the rewards go to Kafka; the processor joins,
the trainer trains and publishes, the node hot-swaps; the held-out reward is measured on every
live adapter version, with the freshness of each.
"""

from demo.freshness import Freshness, VersionTimes, split
from demo.plot import write_plot
from demo.settings import DemoSettings
from demo.tasks import FinalAnswer, Task, heldout_tasks, reward, task_stream

__all__ = [
    "DemoSettings",
    "FinalAnswer",
    "Freshness",
    "Task",
    "VersionTimes",
    "heldout_tasks",
    "reward",
    "split",
    "task_stream",
    "write_plot",
]
