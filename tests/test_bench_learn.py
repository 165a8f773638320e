"""``mc bench learn``: its tasks, its robustness cases, its statistics and its output (no stack), and
one short live instance through the real stack (``slow``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from demo.bench_cases import CASES, SentReward, make_case
from demo.bench_learn import Planned, format_table, plan_runs, pool_saved, run_bench
from demo.bench_tasks import BENCH_TASKS, PRICES, ListTask, PriceTool, ShopTask, make_task
from demo.learn_stats import RunOutcome, examples_to_rise, median_or_none, pool
from demo.observe import LiveVersion
from demo.settings import DemoSettings
from demo.spec import TaskSpec
from demo.stats import rise, score
from demo.tasks import FinalAnswer, Task
from demo.workload import Sample
from maximum_continual.agent import AgentConfig, run_agent
from maximum_continual.llm import Completion
from maximum_continual.system_prompt import expand_examples
from maximum_continual.types import MessageT

ROOT = Path(__file__).resolve().parents[1]
LINE_KEYS = ["base", "last", "rise", "ci_low", "ci_high", "examples_to_0_2", "runs", "kinds_behind"]


# -- tasks -------------------------------------------------------------------------------------------


def _solve(q: Task) -> int:
    """The answer recomputed from the question's text (and the shop's prices)."""
    if q.question.startswith("How much"):
        pairs = re.findall(r"(\d+) (\w+?)s\b", q.question)
        return sum(int(n) * PRICES[item] for n, item in pairs)
    nums = [int(x) for x in re.search(r"\[(.*)\]", q.question).group(1).split(", ")]  # type: ignore[union-attr]
    return {
        "last": nums[-1],
        "largest": max(nums),
        "second_smallest": sorted(nums)[1],
        "sum_even": sum(x for x in nums if x % 2 == 0),
    }[q.kind]


@pytest.mark.parametrize(
    "spec", [ShopTask(), ShopTask(kinds=("one", "two")), ListTask(), ListTask(kinds=("second_smallest", "sum_even"))]
)
def test_streams_are_seeded_never_repeat_and_answers_are_right(spec):
    assert list(itertools.islice(spec.prompts(3), 20)) == list(itertools.islice(spec.prompts(3), 20))
    assert list(itertools.islice(spec.prompts(3), 20)) != list(itertools.islice(spec.prompts(4), 20))
    qs = list(itertools.islice(spec.prompts(1), 600))  # more than an 8-minute run asks (~250)
    assert len({q.question for q in qs}) == len(qs)
    for q in qs:
        assert q.kind in spec.kinds and q.answer == _solve(q)
        assert spec.user_message(q) == q.question


def test_a_stream_whose_templates_run_out_says_so():
    from demo.tasks import distinct

    stream = distinct(lambda rng: Task(f"q{rng.randint(1, 3)}", 0, "k"), "s", max_misses=200)
    assert len(list(itertools.islice(stream, 3))) == 3
    with pytest.raises(RuntimeError, match="ran out"):
        next(stream)


def test_every_bench_task_is_a_task_spec_with_a_0_1_reward():
    assert BENCH_TASKS == ("arithmetic", "shop", "lists")
    for name in BENCH_TASKS:
        spec: TaskSpec[object] = make_task(name)
        assert spec.name == name and spec.final_answer_model is FinalAnswer
        task = next(iter(spec.prompts(0)))
        right = FinalAnswer(answer=task.answer)  # type: ignore[attr-defined]
        assert spec.reward(task, right) == 1.0
        assert spec.reward(task, FinalAnswer(answer=task.answer + 1)) == 0.0  # type: ignore[attr-defined]
        assert spec.reward(task, None) == 0.0
    with pytest.raises(ValueError, match="unknown task"):
        make_task("nope")


def test_the_price_tool_knows_what_the_prompt_does_not():
    tool = PriceTool()
    assert tool("pen") == PRICES["pen"] and tool(item="Pens ") == PRICES["pen"]
    with pytest.raises(KeyError):
        tool("unicorn")
    spec = ShopTask()
    assert spec.max_steps >= 2 and spec.tools and spec.tools[0].name == "lookup_price"
    prompt = spec.system_prompt()
    assert "def lookup_price(item: string) -> integer:" in prompt
    for q in itertools.islice(spec.prompts(0), 50):
        assert str(q.answer) not in re.sub(r"\d+ \w+s", "", q.question)  # the numbers asked are quantities only
    # the worked examples become chat turns, one of them two steps with an observation
    turns = expand_examples([MessageT(role="system", content=prompt)])
    roles = [m.role for m in turns]
    assert roles[0] == "system" and roles.count("assistant") == 3
    assert any(m.content.startswith("Observation:") for m in turns if m.role == "user")
    assert all("final_answer(answer=" in m.content for m in turns if m.role == "assistant" and "total =" in m.content)


class _Scripted:
    def __init__(self, outputs: Sequence[str]) -> None:
        self.outputs = list(outputs)

    async def complete(self, messages, *, model, max_tokens, temperature, stop, session=None) -> Completion:
        return Completion(self.outputs.pop(0), [1], [-0.1], "stop")

    async def aclose(self) -> None:
        return None


def test_a_two_step_shop_answer_through_the_agent_loop_is_rewarded():
    spec = ShopTask(kinds=("two",))
    q = next(iter(spec.prompts(0)))
    (n, a), (m, b) = re.findall(r"(\d+) (\w+?)s\b", q.question)
    llm = _Scripted(
        [
            f"```python\nx = lookup_price(item='{a}')\ny = lookup_price(item='{b}')\nprint(x, y)\n```",
            f"```python\nfinal_answer(answer={n} * x + {m} * y)\n```",
        ]
    )
    msgs = [MessageT(role="system", content=spec.system_prompt()), MessageT(role="user", content=q.question)]
    run = asyncio.run(
        run_agent(
            llm,
            msgs,
            AgentConfig(model="m", max_steps=spec.max_steps),
            tools=spec.tools,
            final_answer_model=FinalAnswer,
        )
    )
    assert len(run.turns) == 2 and f"{PRICES[a]} {PRICES[b]}" in run.messages[-2].content
    assert spec.reward(q, run.final) == 1.0


# -- robustness cases --------------------------------------------------------------------------------


def _sample(reward: float) -> Sample:
    return Sample("p", 0, reward, 0.0, 0.0)


def test_noise_flips_about_a_tenth_seeded_and_counts_them():
    truth = [float(i % 3 == 0) for i in range(4000)]
    a, b, c = (make_case("noise", window=16, stretch_windows=2, seed=s) for s in (1, 1, 2))
    sent_a = [a(_sample(r)) for r in truth]
    assert sent_a == [b(_sample(r)) for r in truth]
    assert sent_a != [c(_sample(r)) for r in truth]
    flipped = sum(1 for s, r in zip(sent_a, truth, strict=True) if s != r)
    assert flipped == a.changed and abs(flipped / len(truth) - 0.1) < 0.02
    assert all(s == 1.0 - r for s, r in zip(sent_a, truth, strict=True) if s != r)


@pytest.mark.parametrize("case,value", [("zeros", 0.0), ("ones", 1.0)])
def test_a_constant_stretch_for_the_first_windows_then_the_truth(case, value):
    t = make_case(case, window=4, stretch_windows=2, seed=0)
    truth = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    sent = [t(_sample(r)) for r in truth]
    assert sent == [value] * 8 + truth[8:]
    assert t.sent == 12 and t.changed == sum(1 for r in truth[:8] if r != value)
    assert CASES == ("noise", "zeros", "ones")
    with pytest.raises(ValueError):
        make_case("nope", window=4, stretch_windows=1, seed=0)


def test_the_identity_transform_sends_the_truth():
    t = SentReward()
    assert [t(_sample(r)) for r in (0.0, 1.0, 0.5)] == [0.0, 1.0, 0.5] and t.changed == 0


# -- statistics --------------------------------------------------------------------------------------


def test_examples_to_rise_counts_the_windows_trained_into_the_first_version_at_base_plus_0_2():
    rewards = {0: [0.0] * 8 + [1.0] * 2, 1: [0.0] * 8 + [1.0] * 2, 2: [1.0] * 3, 3: [1.0] * 4 + [0.0] * 4}
    versions = [LiveVersion(1, 1.0, 16), LiveVersion(2, 2.0, 16), LiveVersion(3, 3.0, 16)]
    # v2 is at 1.0 but on 3 prompts only; v3 at 0.5 >= 0.2 + 0.2 on 8
    assert examples_to_rise(rewards, versions, min_samples=8) == 48
    assert examples_to_rise(rewards, versions, min_samples=3) == 32
    assert examples_to_rise(rewards, versions, target=0.9, min_samples=8) is None
    assert examples_to_rise({1: [1.0]}, versions) is None  # no base
    # a version the node skipped (never live, no traffic) still consumed its window
    skipped = [LiveVersion(1, None, 16), LiveVersion(2, 2.0, 16)]
    assert examples_to_rise({0: [0.0] * 8, 2: [1.0] * 8}, skipped, min_samples=8) == 32
    # exactly base + 0.2 counts (no float fuzz)
    assert examples_to_rise({0: [0.1] * 10, 1: [0.3] * 10}, versions[:1], min_samples=8) == 16


def test_median_treats_never_as_infinity():
    assert median_or_none([32, 64, 96]) == 64
    assert median_or_none([32, None, 96]) == 96
    assert median_or_none([32, None, None]) is None
    assert median_or_none([32, 64]) == 48
    assert median_or_none([]) is None


def _outcome(task: str, base: list[float], last: list[float], ex: int | None = None, **kw) -> RunOutcome:
    return RunOutcome(task, 0, base, last, ex, 3, 8.0, **kw)


def test_pool_pools_prompts_over_seeds_with_welch_interval():
    a = _outcome("t", [0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0], 32)
    b = _outcome("t", [0.0, 0.0, 1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0, 1.0, 1.0], None)
    failed = _outcome("t", [], [], None, error="StackError('x')")
    r = pool([a, b, failed])
    base, last = score(a.base + b.base), score(a.last + b.last)
    want = rise(base, last)
    assert r.base == base and r.last == last
    assert r.line == {
        "base": 0.2,
        "last": round(last.mean, 4),  # type: ignore[arg-type]
        "rise": round(want.rise, 4),  # type: ignore[arg-type]
        "ci_low": round(want.ci_low, 4),  # type: ignore[arg-type]
        "ci_high": round(want.ci_high, 4),  # type: ignore[arg-type]
        "examples_to_0_2": None,  # one of two runs never got there: the median is infinite
        "runs": 2,
        "kinds_behind": {},
    }
    assert list(r.line) == LINE_KEYS
    assert r.seed_rises == [pytest.approx(0.5), pytest.approx(0.5)]
    # the interval is a difference of two means with prompt-level variance
    half = 1.959963984540054 * math.sqrt(base.var / base.n + last.var / last.n)  # type: ignore[operator]
    assert r.line["ci_high"] - r.line["ci_low"] == pytest.approx(2 * half, abs=2e-4)


def test_pool_of_only_failed_runs_is_empty_not_an_error():
    r = pool([_outcome("t", [], [], error="boom")])
    assert r.line["runs"] == 0 and r.line["base"] is None and r.line["examples_to_0_2"] is None


# -- planning and output -----------------------------------------------------------------------------


def test_plan_runs_seed_by_seed_then_the_cases():
    runs = plan_runs(["a", "b"], 2, ["noise", "zeros"], case_task="a", case_seeds=1)
    assert [(p.label, p.seed) for p in runs] == [
        ("a", 0),
        ("b", 0),
        ("a", 1),
        ("b", 1),
        ("a+noise", 0),
        ("a+zeros", 0),
    ]


def test_plan_runs_from_a_first_seed_extends_an_earlier_benchmark():
    runs = plan_runs(["a"], 2, ["noise"], case_task="a", first_seed=3)
    assert [(p.label, p.seed) for p in runs] == [("a", 3), ("a", 4), ("a+noise", 3)]


def test_a_saved_run_reads_back_with_its_prompts_and_one_without_them_is_refused():
    o = RunOutcome("t", 2, [0.0, 1.0], [1.0, 1.0, 0.0], 16, 5, 7.5, "r", changed_rewards=3)
    assert RunOutcome.from_dict(json.loads(json.dumps(o.as_dict()))) == o
    old = {k: v for k, v in o.as_dict().items() if not k.endswith("_rewards")}
    with pytest.raises(ValueError, match="no per-prompt rewards"):
        RunOutcome.from_dict(old)
    failed = RunOutcome("t", 3, [], [], None, 0, 1.0, error="boom").as_dict()
    assert RunOutcome.from_dict({k: v for k, v in failed.items() if not k.endswith("_rewards")}).error == "boom"


def test_pool_saved_pools_two_benchmarks_as_one_and_refuses_a_run_twice(tmp_path):
    a = RunOutcome("t", 0, [0.0, 1.0] * 8, [1.0] * 16, 16, 5, 7.0, "a")
    b = RunOutcome("t", 1, [0.0, 0.0] * 8, [1.0, 0.0] * 8, None, 4, 7.0, "b")
    for name, runs in (("one", [a]), ("two", [b])):
        (tmp_path / f"{name}.json").write_text(json.dumps({"runs": [r.as_dict() for r in runs]}))
    lines: list[str] = []
    last = pool_saved([tmp_path / "one.json", tmp_path / "two.json"], log=lines.append)
    assert last["tasks"]["t"] == pool([a, b]).line and last["minutes"] == 14.0
    assert any(line.startswith("t ") for line in lines)
    with pytest.raises(ValueError, match="seed 0 is in both"):
        pool_saved([tmp_path / "one.json", tmp_path / "one.json"], log=lines.append)


def test_run_bench_prints_the_table_and_the_last_line_and_writes_results(tmp_path):
    def fake_run(planned: Planned, settings: DemoSettings, *, stretch_windows: int, log) -> RunOutcome:
        assert settings.demo_state_dir.parent == tmp_path and settings.demo_minutes == 3.0
        up = 0.4 if planned.case is None else 0.1
        return RunOutcome(planned.label, planned.seed, [0.0, 1.0] * 10, [1.0 - up, 1.0] * 10, 64, 4, 3.0, "r")

    lines: list[str] = []
    runs = plan_runs(["arithmetic", "lists"], 2, ["noise"], case_task="arithmetic")
    last = run_bench(runs, DemoSettings(demo_minutes=3.0), tmp_path, log=lines.append, run=fake_run)
    assert list(last) == ["tasks", "minutes"]
    assert list(last["tasks"]) == ["arithmetic", "lists", "arithmetic+noise"]
    for entry in last["tasks"].values():
        assert list(entry) == LINE_KEYS
    assert last["tasks"]["arithmetic"]["runs"] == 2 and last["tasks"]["arithmetic"]["rise"] == pytest.approx(0.3)
    assert last["tasks"]["arithmetic"]["examples_to_0_2"] == 64
    assert any(line.startswith("task ") for line in lines) and any(line.startswith("lists ") for line in lines)
    (written,) = tmp_path.glob("learn-*.json")
    data = json.loads(written.read_text())
    assert data["result"] == last and len(data["runs"]) == 5


def test_kinds_behind_are_counted_over_runs_and_shown_in_the_table():
    runs = [
        _outcome("t", [0.0, 1.0], [1.0, 1.0], kinds_behind=("sub",)),
        _outcome("t", [0.0, 1.0], [1.0, 0.0], kinds_behind=("mul", "sub")),
        _outcome("t", [0.0, 1.0], [1.0, 1.0]),
        _outcome("t", [], [], kinds_behind=("add",), error="boom"),  # a failed run counts for nothing
    ]
    r = pool(runs)
    assert r.line["kinds_behind"] == {"mul": 1, "sub": 2}
    assert format_table({"t": r})[1].endswith("behind: mul in 1, sub in 2")
    saved = RunOutcome.from_dict(json.loads(json.dumps(runs[1].as_dict())))
    assert saved.kinds_behind == ("mul", "sub")


def test_format_table_shows_missing_numbers_as_dashes():
    lines = format_table({"t": pool([_outcome("t", [], [])])})
    assert lines[1].startswith("t ") and " - " in lines[1]


def test_cli_refuses_an_unknown_task_before_starting_anything():
    from mc_cli.main import main

    assert main(["bench", "learn", "--tasks", "nope", "--quick"]) == 2
    assert main(["bench", "learn", "--cases", "nope"]) == 2


def test_scores_by_kind_splits_what_the_pooled_reward_hides():
    from demo.bench_base import scores_by_kind

    kinds, rewards = ["add", "sub", "add", "sub"], [1.0, 0.0, 1.0, 0.0]
    out = scores_by_kind([Sample("p", 0, r, 0.0, 0.0, kind=k) for k, r in zip(kinds, rewards, strict=True)])
    assert (out["all"].mean, out["all"].n) == (0.5, 4)
    assert (out["add"].mean, out["sub"].mean) == (1.0, 0.0) and list(out) == ["all", "add", "sub"]
    assert list(scores_by_kind([Sample("p", 0, 1.0, 0.0, 0.0), Sample("p", 0, 0.0, 0.0, 0.0)])) == ["all"]  # no kind


def test_cli_refuses_a_bad_adapter_flag_before_asking_vllm(tmp_path, capsys):
    from mc_cli.main import main

    (tmp_path / "v3").mkdir()
    (tmp_path / "v3" / "adapter_config.json").write_text("{}")
    assert main(["bench", "learn", "--adapter", f"v3={tmp_path / 'v3'}"]) == 2  # no --base N
    for bad in ("no-equals-sign", f"x={tmp_path}", f"base={tmp_path / 'v3'}"):
        assert main(["bench", "learn", "--base", "4", "--adapter", bad]) == 2, bad
    ok = f"v3={tmp_path / 'v3'}"
    assert main(["bench", "learn", "--base", "4", "--adapter", ok, "--adapter", ok]) == 2  # one label twice
    assert "adapter_config.json" in capsys.readouterr().err


# -- one live instance -------------------------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.s3
@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_one_quick_task_through_the_real_stack_prints_the_schema(kafka, s3, vllm, bucket, tmp_path):
    argv = [sys.executable, "-m", "mc_cli.main", "bench", "learn", "--quick", "--tasks", "lists"]
    argv += ["--minutes", "2.5", "--out-dir", str(tmp_path)]
    env = {
        **os.environ,
        "MC_S3_BUCKET": bucket,
        "MC_TRAINER_WINDOW_EXAMPLES": "4",  # the trainer's own setting (test configuration: versions within 2.5 min)
        "MC_DEMO_CYCLE_GUESS_S": "20",
        "MC_DEMO_TEARDOWN_S": "35",
        "MC_DEMO_AFTER_MIN_SAMPLES": "4",
    }
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=290)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(last) == ["tasks", "minutes"] and list(last["tasks"]) == ["lists"]
    entry = last["tasks"]["lists"]
    assert list(entry) == LINE_KEYS and entry["runs"] == 1
    assert 0.0 <= entry["base"] <= 1.0
    assert 0 < last["minutes"] <= 2.5 + 1.0
    (written,) = tmp_path.glob("learn-*.json")
    assert json.loads(written.read_text())["result"] == last
