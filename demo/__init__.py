"""The live learning loop (``mc demo``): an app serves new prompts on the live adapter and sends
rewards while the trainer trains, and the reward of the live traffic is measured per version.

The SDK's agent answers through an inference node; the rewards go to Kafka; the processor joins,
the trainer trains and publishes, the node hot-swaps. :func:`run_live_loop` is the loop for any
:class:`TaskSpec` (benchmarks bring their own task); :class:`ArithmeticTask` is the demo's.
"""

from demo.freshness import Freshness, VersionTimes, split
from demo.loop import LiveResults, run_live_loop
from demo.plot import write_plot
from demo.run import LiveRun, run_demo, run_live
from demo.settings import DemoSettings
from demo.spec import TaskSpec
from demo.tasks import ArithmeticTask, FinalAnswer, Task

__all__ = [
    "ArithmeticTask",
    "DemoSettings",
    "FinalAnswer",
    "Freshness",
    "LiveResults",
    "LiveRun",
    "Task",
    "TaskSpec",
    "VersionTimes",
    "run_demo",
    "run_live",
    "run_live_loop",
    "split",
    "write_plot",
]
