"""Each ``mc chaos join`` scenario once, on the real broker (the command repeats them: see the README).

SIGKILL one of two workers; a third worker joins and leaves; SIGKILL the only worker and restart it on
its disk, and on an empty one; restart the Kafka broker. Every reward must come out as an example (at
least once), and the workers that were not killed must log no crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from producers import ProducerSettings
from stream_processors.chaos import SCENARIOS, run_scenario

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_chaos_scenario_loses_no_example(scenario: str, kafka: Any, tmp_path: Path) -> None:
    base = ProducerSettings(kafka_bootstrap=kafka.kafka_bootstrap)
    res = run_scenario(scenario, base, tmp_path, pairs=2000, seed=7, publish_s=12)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.rglob("worker-*.log"))
    assert res.error is None, res.error
    assert res.missing == 0, f"{res}\n{logs}"
    assert res.bad_log_lines == 0, f"{res}\n{logs}"
