"""The process sandbox: attacks end their step with an error in time, tools cross the pipe and stay
out of reach, nothing outlives the run, unsafe imports are refused. Pure processes: no stack needed."""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import maximum_continual.sandbox as sandbox_pkg
from maximum_continual import MaximumContinual, Tool
from maximum_continual.agent import AgentConfig, run_agent
from maximum_continual.llm import Completion
from maximum_continual.sandbox import (
    DENIED_MODULES,
    InProcessExecutor,
    SandboxExecutor,
    SandboxLimits,
    UnsafeImportError,
    check_authorized_imports,
    wire,
)
from maximum_continual.sandbox.process import KILL_GRACE_S
from maximum_continual.settings import ClientSettings
from maximum_continual.types import MessageT
from schemas.errors import SandboxError

LIMIT_S = 1.0
#: a step ends by its limit, the kill grace, and some slack for a loaded machine
DEADLINE_S = LIMIT_S + KILL_GRACE_S + 2.0


class Adder(Tool):
    name = "add"
    description = "Adds two integers"
    inputs = {"a": {"type": "integer", "description": "first"}, "b": {"type": "integer", "description": "second"}}
    output_type = "integer"

    def __init__(self) -> None:
        super().__init__()
        self.secret = "s3cret-token"
        self.calls = 0

    def forward(self, a: int, b: int) -> int:
        self.calls += 1
        return a + b


class Odd(Tool):
    name = "odd"
    description = "Misbehaves on request"
    inputs = {"how": {"type": "string", "description": "raise, object or echo"}}
    output_type = "any"

    def forward(self, how: str) -> object:
        if how == "raise":
            raise KeyError("missing")
        if how == "object":
            return object()
        return {"echo": how, "nested": [(1, 2.5), {"x": None}]}


def children() -> set[int]:
    """The live (not reaped) child processes of this process."""
    me, found = str(os.getpid()), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                found.add(int(entry))
    return found


@pytest.fixture
def box():
    with SandboxExecutor([Adder(), Odd()], ["json"], step_timeout_s=LIMIT_S) as executor:
        executor.start()
        yield executor


def ok(executor: SandboxExecutor, code: str):
    outcome = executor.run(code)
    assert outcome.error is None, outcome.error
    return outcome


def test_tool_works_through_the_pipe_and_its_object_is_out_of_reach():
    adder = Adder()
    with SandboxExecutor([adder], [], step_timeout_s=LIMIT_S) as executor:
        assert repr(ok(executor, "x = add(2, b=3)\nprint('sum', x)\nx").output) == "5"
        assert adder.calls == 1  # the real tool ran, in this process
        for reach in ("add.secret", "add.forward", "add.inputs", "add.__self__", "add.__globals__", "add.__closure__"):
            outcome = executor.run(f"leak = {reach}\nleak")
            assert outcome.error is not None, reach
            assert "s3cret" not in outcome.error and "s3cret" not in repr(outcome.output)
        assert adder.calls == 1


def test_state_persists_across_steps_and_values_come_back_as_reprs(box):
    ok(box, "import json\nitems = [add(i, 1) for i in range(3)]")
    out = ok(box, "items.append(json.dumps({'n': len(items)}))\nitems").output
    assert repr(out) == "[1, 2, 3, '{\"n\": 3}']"


def test_tool_errors_keep_their_type_and_unsendable_values_are_errors(box):
    out = ok(box, "try:\n    odd('raise')\nexcept KeyError as e:\n    caught = e.args[0]\ncaught")
    assert repr(out.output) == "'missing'"
    assert repr(ok(box, "odd('echo')").output) == "{'echo': 'echo', 'nested': [(1, 2.5), {'x': None}]}"
    err = box.run("odd('object')").error
    assert err is not None and "the result of odd()" in err and "not plain data" in err
    err = box.run("odd(lambda: 1)").error
    assert err is not None and "the arguments of odd()" in err


def test_final_answer_crosses_as_plain_data_and_anything_else_is_an_error(box):
    final = ok(box, "final_answer(answer=add(1, 1), parts=[1, {'a': (2, 3)}])").final
    assert final is not None and final.args == () and final.kwargs == {"answer": 2, "parts": [1, {"a": (2, 3)}]}
    for code in ("class A:\n    pass\nfinal_answer(A())", "final_answer(lambda: 1)"):
        outcome = box.run(code)
        assert outcome.final is None and "final_answer's arguments cannot be passed" in (outcome.error or "")


ATTACKS = {
    "endless loop": "n = 0\nwhile True:\n    n += 1",
    "huge power": "10**10**9",
    "50 GB list": "[0] * (50 * 10**9 // 8)",
    "50 GB bytearray": "bytearray(50 * 10**9)",
    "50 GB string": "'a' * (50 * 10**9)",
    "sleep": "import time\ntime.sleep(10**9)",
    "one long C call": "sum(range(10**12))",
    "import os": "import os",
    "import subprocess": "import subprocess",
    "read a file": "open('/etc/passwd').read()",
}


@pytest.mark.parametrize("code", list(ATTACKS.values()), ids=list(ATTACKS))
def test_attack_ends_its_step_with_an_error_in_time_and_the_next_step_works(box, code):
    t0 = time.monotonic()
    outcome = box.run(code)
    assert outcome.error is not None
    assert time.monotonic() - t0 < DEADLINE_S
    assert "root:" not in (outcome.error + outcome.logs)
    assert repr(ok(box, "1 + add(1, 0)").output) == "2"


def test_a_soft_stop_keeps_the_variables_a_kill_loses_them_and_says_so(box):
    ok(box, "kept = 41")
    stopped = box.run("while True:\n    pass")
    assert stopped.timed_out and "was stopped" in (stopped.error or "")
    assert repr(ok(box, "kept + 1").output) == "42"
    pid = box.pid
    killed = box.run("sum(range(10**12))")
    assert killed.timed_out and "process was killed" in (killed.error or "") and "lost" in (killed.error or "")
    assert box.pid != pid  # a fresh process, already starting
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "kept" in (box.run("kept").error or "")
    assert repr(ok(box, "kept = 1\nkept").output) == "1"


def test_memory_limit_applies_and_the_cpu_limit_replaces_the_process():
    # the CPU limit counts the process's whole life, its startup (about 0.5 s of CPU) included
    with SandboxExecutor([], [], step_timeout_s=15.0, limits=SandboxLimits(memory_mib=256, cpu_s=3)) as executor:
        assert "MemoryError" in (executor.run("big = 'a' * (300 * 2**20)").error or "")
        ok(executor, "small = 'a' * (50 * 2**20)")
        outcome = executor.run("sum(range(10**12))")  # one C call: only the CPU limit or the kill stops it
        assert "CPU time limit" in (outcome.error or ""), outcome.error
        assert repr(ok(executor, "2 * 2").output) == "4"


def test_no_new_processes_even_when_os_and_subprocess_are_authorized():
    with SandboxExecutor([], ["os", "subprocess"], step_timeout_s=LIMIT_S, allow_unsafe_imports=True) as executor:
        for code in (
            "import os\nos.fork()",
            "import subprocess\nsubprocess.run(['true'])",
            "os.execv('/bin/true', ['x'])",
        ):
            error = executor.run(code).error or ""
            assert "PermissionError" in error or "BlockingIOError" in error, error
        ok(executor, "x = 1")  # the process survived all three


def test_two_sandboxes_run_concurrently_while_one_is_killed():
    with (
        SandboxExecutor([Adder()], [], step_timeout_s=LIMIT_S) as doomed,
        SandboxExecutor([Adder()], [], step_timeout_s=LIMIT_S) as healthy,
    ):
        doomed.start()
        healthy.start()

        def steady() -> list[str]:
            outs = [repr(ok(healthy, f"v = add({i}, 1)\nv").output) for i in range(20)]
            ok(healthy, "import time\ntime.sleep(0.5)")
            return outs

        with ThreadPoolExecutor(2) as pool:
            killed = pool.submit(doomed.run, "sum(range(10**12))")
            good = pool.submit(steady)
            assert good.result(timeout=DEADLINE_S) == [str(i + 1) for i in range(20)]
            assert "process was killed" in (killed.result(timeout=DEADLINE_S).error or "")


def test_close_kills_a_running_step_and_leaves_no_process():
    before = children()
    executor = SandboxExecutor([], [], step_timeout_s=30.0)
    executor.start()
    pid = executor.pid
    assert pid in children()
    with ThreadPoolExecutor(1) as pool:
        step = pool.submit(executor.run, "while True:\n    pass")
        time.sleep(0.3)
        t0 = time.monotonic()
        executor.close()
        assert step.result(timeout=5).error is not None and time.monotonic() - t0 < 5
    assert children() <= before and executor.pid is None
    assert executor.run("1").error == "SandboxError: the sandbox is closed"


class _LLM:
    """Writes one step that sleeps, then waits forever (or fails) on the next turn."""

    def __init__(self, then: str) -> None:
        self.then = then
        self.calls = 0

    async def complete(self, messages, *, model, max_tokens, temperature, stop, session=None) -> Completion:
        self.calls += 1
        if self.calls == 1:
            return Completion("```python\nx = 1\n```", [1], [-0.1], "stop", adapter_version=0)
        if self.then == "fail":
            raise RuntimeError("endpoint broke")
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("then", ["fail", "cancel"])
def test_run_agent_leaves_no_process_on_errors_and_cancellation(then):
    before, threads = children(), threading.active_count()
    messages = [MessageT(role="user", content="task")]

    async def main() -> None:
        task = asyncio.create_task(run_agent(_LLM(then), messages, AgentConfig(model="m", step_timeout_s=LIMIT_S)))
        if then == "fail":
            with pytest.raises(RuntimeError, match="endpoint broke"):
                await task
            return
        await asyncio.sleep(2.0)  # the first step ran; the second model turn hangs
        assert children() - before
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert children() <= before
    assert threading.active_count() == threads  # the step's worker thread ended too


def test_deny_list_refuses_unsafe_imports_unless_the_flag_is_set():
    assert {"*", "os", "subprocess", "socket", "ctypes", "importlib", "pickle", "io", "pathlib"} <= DENIED_MODULES
    for names in (["os"], ["*"], ["subprocess"], ["json", "os.path"], ["socket.*"]):
        with pytest.raises(UnsafeImportError) as caught:
            check_authorized_imports(names)
        assert "allow_unsafe_imports=True" in str(caught.value) and isinstance(caught.value, SandboxError)
        assert check_authorized_imports(names, allow_unsafe=True) == names
    assert "'os'" in str(UnsafeImportError(["os"])) and UnsafeImportError(["os", "sys"]).refused == ("os", "sys")
    assert check_authorized_imports(["json", "statistics"]) == ["json", "statistics"]
    with pytest.raises(SandboxError, match="not installed"):
        check_authorized_imports(["no_such_module_here"])
    before = children()
    with pytest.raises(UnsafeImportError):
        SandboxExecutor([], ["os"], step_timeout_s=LIMIT_S)  # refused before any process starts
    with pytest.raises(UnsafeImportError):
        InProcessExecutor([], ["subprocess"], step_timeout_s=LIMIT_S)
    assert children() <= before


def test_predict_refuses_unsafe_imports_before_any_model_call(monkeypatch):
    llm = _LLM("fail")
    client = MaximumContinual(auto_deploy=False, llm=lambda: llm)
    model = client.init_model("sandbox-test")
    messages = [MessageT(role="user", content="task")]
    with pytest.raises(UnsafeImportError, match="'os'"):
        model.predict(messages, additional_authorized_imports=["os"])
    with pytest.raises(UnsafeImportError):
        model.predict(messages, additional_authorized_imports=["*"], allow_unsafe_imports=False)
    assert llm.calls == 0
    with pytest.raises(RuntimeError, match="endpoint broke"):  # the flag lets it through to the model
        model.predict(messages, additional_authorized_imports=["os"], allow_unsafe_imports=True, max_steps=2)
    assert llm.calls == 2
    trusting = MaximumContinual(auto_deploy=False, llm=lambda: _LLM("fail"), allow_unsafe_imports=True)
    with pytest.raises(RuntimeError, match="endpoint broke"):  # or the client's setting does
        trusting.init_model("sandbox-test").predict(messages, additional_authorized_imports=["os"], max_steps=2)
    monkeypatch.setenv("MC_SDK_ALLOW_UNSAFE_IMPORTS", "1")
    monkeypatch.setenv("MC_SDK_SANDBOX_MEMORY_MIB", "512")
    settings = ClientSettings()
    assert settings.allow_unsafe_imports is True and settings.sandbox_memory_mib == 512
    assert ClientSettings.model_fields["sandbox_cpu_s"].default == SandboxLimits().cpu_s


def test_wire_refuses_anything_but_plain_data():
    value = {"a": [1, 2.5, None, True], "b": (b"x", {3}, frozenset({4})), "c": "s"}
    assert wire.loads(wire.dumps(value)) == value
    for hostile in (pickle.dumps(os.system), pickle.dumps(eval), pickle.dumps(bytearray(4), protocol=2)):
        with pytest.raises(wire.WireError):
            wire.loads(hostile)
    with pytest.raises(wire.WireError):
        wire.dumps(lambda: 1)


def test_in_process_executor_is_still_available_as_the_baseline():
    with InProcessExecutor([Adder()], [], step_timeout_s=LIMIT_S) as executor:
        assert executor.run("add(1, 2)").output == 3


def test_sandbox_public_api_is_pinned():
    public = {name for name, value in vars(sandbox_pkg).items() if not name.startswith("_") and not _is_module(value)}
    assert set(sandbox_pkg.__all__) == public


def _is_module(value: object) -> bool:
    return type(value).__name__ == "module"
