"""node/supervisor.py: a failing service is caught, logged with its cause, restarted with capped
exponential backoff and shown in /v1/health and /metrics; the node keeps serving; shutdown is prompt.

Unit tests run on trio's MockClock (autojump), so the backoff figures are exact virtual seconds.
"""

from __future__ import annotations

import gc
import json
import logging
import urllib.request
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest

from keyreg.app import open_node
from keyreg.config import Config, SupervisorConfig
from keyreg.core.errors import ChainError, ConfigError
from keyreg.store.memory import MemoryStore
from keyreg.supervisor import (
    BACKING_OFF,
    RUNNING,
    STOPPED,
    Supervisor,
    SupervisorCollector,
    describe,
)

SECRET_URL = "https://operator:hunter2@rpc.example.org:8545/v3/SECRETAPIKEY?token=abc"


def run_mock(fn: Any, *args: Any) -> Any:
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


class Flaky:
    """A node-starter-shaped service: starts, then fails ``fails`` times, then runs until cancelled."""

    def __init__(self, fails: int, *, run_s: Any = lambda n: 0.0, before_start: int = 0) -> None:
        self.fails, self.run_s, self.before_start = fails, run_s, before_start
        self.starts: list[float] = []  # trio time of each start
        self.cleanups = 0

    async def __call__(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.starts.append(trio.current_time())
        n = len(self.starts)
        if 1 < n <= 1 + self.before_start:
            raise ChainError(f"connecting to {SECRET_URL} failed")
        task_status.started()
        try:
            await trio.sleep(self.run_s(n))
            if n <= self.fails + self.before_start:
                raise ValueError(f"junk from {SECRET_URL}")
            await trio.sleep_forever()
        finally:
            self.cleanups += 1


def test_failure_is_restarted_with_exponential_backoff(caplog: pytest.LogCaptureFixture) -> None:
    sup = Supervisor(SupervisorConfig(restart_initial_s=1.0, restart_max_s=60.0, healthy_after_s=600.0))
    svc = Flaky(fails=4)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run, "indexer", svc)
            with trio.fail_after(100):
                while len(svc.starts) < 5:
                    await trio.sleep(0.01)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.DEBUG, logger="keyreg.supervisor"):
        run_mock(main)
    gaps = [round(b - a, 3) for a, b in zip(svc.starts, svc.starts[1:], strict=False)]
    assert gaps == [1.0, 2.0, 4.0, 8.0]
    state = sup.states["indexer"]
    assert (state.restarts, state.failures, state.streak) == (4, 4, 4)
    assert state.last_error is not None
    assert state.last_error.startswith("ValueError: junk from https://rpc.example.org")
    assert svc.cleanups == 5  # every run, including the last one cancelled at shutdown, cleaned up
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 4  # once per failure
    assert all("service indexer failed: ValueError" in r.getMessage() for r in errors)
    text = caplog.text
    assert "hunter2" not in text
    assert "SECRETAPIKEY" not in text
    assert "token=abc" not in text


def test_backoff_is_capped_and_a_healthy_run_resets_it() -> None:
    sup = Supervisor(SupervisorConfig(restart_initial_s=0.5, restart_max_s=3.0, healthy_after_s=10.0))
    assert [sup.backoff(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    assert sup.backoff(10_000) == 3.0  # no overflow
    # fails 3 times quickly, then runs 20 s (healthy) and fails again: the streak starts over
    svc = Flaky(fails=5, run_s=lambda n: 0.0 if n <= 3 else 20.0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run, "watcher", svc)
            with trio.fail_after(100):
                while len(svc.starts) < 6:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    run_mock(main)
    gaps = [round(b - a, 3) for a, b in zip(svc.starts, svc.starts[1:], strict=False)]
    # 0.5, 1, 2 (quick failures), then 20 s run + 0.5 (streak reset), and 20 + 0.5 again
    assert gaps == [0.5, 1.0, 2.0, 20.5, 20.5]


def test_failures_before_a_restart_starts_are_retried_too() -> None:
    sup = Supervisor(SupervisorConfig(restart_initial_s=1.0, restart_max_s=4.0, healthy_after_s=60.0))
    svc = Flaky(fails=1, before_start=3)  # run 1 fails, restarts 2-4 fail before started(), 5 runs

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run, "relay", svc)
            with trio.fail_after(100):
                while sup.states["relay"].state != RUNNING or len(svc.starts) < 5:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    run_mock(main)
    assert sup.states["relay"].restarts == 4
    assert sup.states["relay"].last_error is not None
    assert "ChainError: connecting to https://rpc.example.org:8545 failed" in sup.states["relay"].last_error


def test_a_failure_before_the_first_start_is_raised() -> None:
    """A service that cannot start at all is a configuration error: the node must not loop on it."""
    sup = Supervisor(SupervisorConfig())

    async def bad(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise ConfigError("no relayer keystore at /nowhere")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run, "chain", bad)

    with pytest.raises(ExceptionGroup) as info:
        run_mock(main)
    leaves = list(_leaves(info.value))
    assert [type(e) for e in leaves] == [ConfigError]
    assert sup.states["chain"].state == "failed"


def test_shutdown_during_a_long_backoff_is_prompt() -> None:
    sup = Supervisor(SupervisorConfig(restart_initial_s=3600.0, restart_max_s=3600.0))
    svc = Flaky(fails=10)

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run, "sync", svc)
            with trio.fail_after(10):
                while sup.states["sync"].state != BACKING_OFF:
                    await trio.sleep(0.001)
            t0 = trio.current_time()
            nursery.cancel_scope.cancel()
        return trio.current_time() - t0

    assert run_mock(main) == 0.0
    assert len(svc.starts) == 1


def test_plain_loop_group_failures_and_normal_return() -> None:
    """starts=False supervises a plain loop; failures inside a service's own nursery arrive as an
    exception group and are caught; a service that returns is stopped, not restarted."""
    sup = Supervisor(SupervisorConfig(restart_initial_s=1.0, restart_max_s=1.0))
    runs: list[int] = []

    async def loop_with_children() -> None:
        runs.append(1)
        if len(runs) == 3:
            return

        async def child() -> None:
            await trio.sleep(0.5)
            raise KeyError("missing")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            nursery.start_soon(trio.sleep_forever)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: sup.run("scheduler", loop_with_children, starts=False, task_status=task_status)
            )
            with trio.fail_after(100):
                while sup.states["scheduler"].state != STOPPED:
                    await trio.sleep(0.01)

    run_mock(main)
    state = sup.states["scheduler"]
    assert (len(runs), state.restarts, state.failures) == (3, 2, 2)
    assert state.last_error is not None
    assert state.last_error.startswith("KeyError: 'missing' (at ")
    assert "in child" in state.last_error


def test_status_and_metrics_views() -> None:
    sup = Supervisor(SupervisorConfig(restart_initial_s=5.0, restart_max_s=5.0))
    svc = Flaky(fails=1, run_s=lambda n: 1.0)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(SupervisorCollector(sup))
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run, "gov", svc)
            wrapped = sup.wrap_status("gov", lambda: {"ok": True, "indexer": {"governors": 0}})
            seen["running"] = wrapped()
            with trio.fail_after(10):
                while sup.states["gov"].state != BACKING_OFF:
                    await trio.sleep(0.001)
            seen["backing_off"] = wrapped()
            seen["metrics"] = generate_latest(registry).decode()
            while sup.states["gov"].state != RUNNING:
                await trio.sleep(0.01)
            seen["again"] = sup.status_of("gov")()
            nursery.cancel_scope.cancel()

    run_mock(main)
    assert seen["running"]["ok"] is True
    assert seen["running"]["supervisor"]["state"] == "running"
    assert seen["running"]["indexer"] == {"governors": 0}
    off = seen["backing_off"]
    assert off["ok"] is False
    assert off["supervisor"]["state"] == "backing-off"
    assert off["supervisor"]["retry_in_s"] == 5.0
    assert off["supervisor"]["failures"] == 1
    assert off["supervisor"]["last_error"].startswith("ValueError: junk from https://rpc.example.org:8545 ")
    m = seen["metrics"]
    assert 'keyreg_service_up{service="gov"} 0.0' in m
    assert 'keyreg_service_backoff_seconds{service="gov"} 5.0' in m
    assert 'keyreg_service_failures_total{service="gov"} 1.0' in m
    assert 'keyreg_service_restarts_total{service="gov"} 0.0' in m
    assert seen["again"]["ok"] is True
    assert seen["again"]["supervisor"]["restarts"] == 1


def test_a_broken_status_provider_keeps_the_supervision_state() -> None:
    sup = Supervisor(SupervisorConfig())

    def broken() -> dict[str, Any]:
        raise RuntimeError("provider bug")

    async def main() -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run, "p2p", Flaky(fails=0))
            out = sup.wrap_status("p2p", broken)()
            nursery.cancel_scope.cancel()
        return out

    out = run_mock(main)
    assert out["ok"] is False
    assert out["error"] == "RuntimeError"
    assert out["supervisor"]["state"] == "running"


def test_describe_is_bounded_and_secret_free() -> None:
    exc = RuntimeError(f"postgresql://keyreg:pw123@db.internal:5432/keyreg?sslkey=/k {'x' * 5000}")
    text = describe(exc)
    assert "pw123" not in text
    assert "sslkey" not in text
    assert text.startswith("RuntimeError: postgresql://db.internal:5432 ")
    assert len(text) < 400
    assert describe(ExceptionGroup("g", [ValueError("a"), KeyError("b")])) == "ValueError: a (+1 more)"
    assert describe(ValueError()) == "ValueError"


def test_bad_supervisor_config_is_refused() -> None:
    with pytest.raises(ConfigError):
        Supervisor(SupervisorConfig(restart_initial_s=0.0))
    with pytest.raises(ConfigError):
        Supervisor(SupervisorConfig(restart_initial_s=10.0, restart_max_s=1.0))


# ---------------------------------------------------------------- the node's composition root

_FAILS = {"left": 3}


async def start_boom(node: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A node service (wired like p2p/chain/gov) that fails three times after starting."""
    node.register_status("boom", lambda: {"ok": True, "polls": 1})
    task_status.started()
    await trio.sleep(0.01)
    if _FAILS["left"] > 0:
        _FAILS["left"] -= 1
        raise ValueError(f"bad answer from {SECRET_URL}")
    await trio.sleep_forever()


def boom_services(node: Any) -> list[tuple[str, Any]]:
    return [("boom", partial(start_boom, node))]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 (loopback test URL)
        return r.status, r.read()


def test_node_keeps_serving_while_a_service_fails(tmp_path: Any) -> None:
    """Through open_node: the failing service is restarted, the API answers throughout, /v1/health
    and /metrics show the failures, and leaving the node is prompt."""
    _FAILS["left"] = 3
    config = Config(data_dir=tmp_path)
    config = Config(
        data_dir=tmp_path,
        api=type(config.api)(port=0, admin_port=0),
        supervisor=SupervisorConfig(restart_initial_s=0.05, restart_max_s=0.2, healthy_after_s=60.0),
    )

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with open_node(config, store=MemoryStore(), services=boom_services) as node:
            base = node.api_url if node.api_url.startswith("http") else f"http://{node.api_url}"
            with trio.fail_after(30):
                while True:
                    status, body = await trio.to_thread.run_sync(_get, base + "/v1/health")
                    assert status == 200
                    health = json.loads(body)
                    if health["services"]["boom"]["supervisor"]["restarts"] >= 3:
                        break
                    await trio.sleep(0.02)
                while health["services"]["boom"]["supervisor"]["state"] != "running":
                    health = json.loads((await trio.to_thread.run_sync(_get, base + "/v1/health"))[1])
                    await trio.sleep(0.02)
            out["health"] = health
            out["metrics"] = (await trio.to_thread.run_sync(_get, base + "/metrics"))[1].decode()
            out["t0"] = trio.current_time()
        out["shutdown_s"] = trio.current_time() - out["t0"]
        return out

    thresholds = gc.get_threshold()
    try:
        out = trio.run(main)
    finally:  # open_node tunes the process's GC (node/runtime.py): give the test process its own back
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    boom = out["health"]["services"]["boom"]
    assert boom["ok"] is True
    assert boom["polls"] == 1
    assert boom["supervisor"]["restarts"] == 3
    assert boom["supervisor"]["failures"] == 3
    assert boom["supervisor"]["last_error"].startswith("ValueError: bad answer from https://rpc.example.org:8545")
    assert "hunter2" not in json.dumps(out["health"])
    assert "SECRETAPIKEY" not in out["metrics"]
    assert 'keyreg_service_restarts_total{service="boom"} 3.0' in out["metrics"]
    assert 'keyreg_service_up{service="boom"} 1.0' in out["metrics"]
    assert "keyreg_signatures_recovered_total " in out["metrics"]  # what inputs cost (node/app.py)
    assert out["shutdown_s"] < 5


def _leaves(exc: BaseException) -> Any:
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            yield from _leaves(e)
    else:
        yield exc
