"""Signature recovery of large batches: the same results and errors whoever recovers a chunk.

The ingesting thread takes over chunks no worker has started instead of waiting
(``node.registry._Recovery``). Executors that never start a chunk, run every chunk at once, or
alternate make each path deterministic; all must match ingesting the events one at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from node import registry as registry_module
from node.registry import Registry
from node.store.memory import MemoryStore
from tests.store.streams import DOMAIN, mixed_items

CLOCK = lambda: 1_800_000_000  # noqa: E731


def _items() -> list[bytes]:
    return mixed_items(11, 24, 6)


class _Running(Future[Any]):
    """A chunk a worker has started (it cannot be cancelled) and finishes when it is waited for."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__()
        assert self.set_running_or_notify_cancel()
        self._run = lambda: fn(*args)

    def result(self, timeout: float | None = None) -> Any:
        if not self.done():
            self.set_result(self._run())
        return super().result(timeout)


class _Executor:
    """Per submitted chunk, by ``runs(i)``: "done" at once, "running" (finished when waited for),
    or anything else: never started (the future stays pending)."""

    def __init__(self, runs: Callable[[int], str]) -> None:
        self.runs = runs
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        how = self.runs(self.submitted)
        self.submitted += 1
        if how == "running":
            return _Running(fn, *args)
        future: Future[Any] = Future()
        if how == "done":
            assert future.set_running_or_notify_cancel()
            future.set_result(fn(*args))
        return future


@pytest.mark.parametrize(
    "runs",
    [
        lambda i: "pending",
        lambda i: "done",
        lambda i: "running",
        lambda i: "done" if i % 2 else "pending",
        lambda i: ("running", "pending", "done")[i % 3],
        lambda i: "pending" if i in (2, 5) else "running",
    ],
    ids=["never-started", "done", "running", "odd-done", "mixed", "running-but-two"],
)
def test_whoever_recovers_a_chunk_the_results_match_one_by_one_ingest(runs: Callable[[int], str]) -> None:
    items = _items()
    assert len(items) >= 4 * registry_module._RECOVER_CHUNK
    # Every rejection audited one by one, as the one-by-one registry does (no summary entry).
    batched_registry = Registry(DOMAIN, MemoryStore(), clock=CLOCK, reject_audits_per_batch=len(items))
    executor = _Executor(runs)
    batched_registry.recovery.executor = executor  # type: ignore[assignment]
    batched = batched_registry.ingest(items)
    assert executor.submitted == -(-len(items) // registry_module._RECOVER_CHUNK)
    one_by_one = Registry(DOMAIN, MemoryStore(), clock=CLOCK)
    expected = [one_by_one.ingest([item])[0] for item in items]
    assert [r.to_dict() for r in batched] == [r.to_dict() for r in expected]
    codes = {r.error.code for r in batched if r.error is not None}
    assert {"malformed", "unauthorized_signer", "bad_signature"} <= codes, codes
    assert [(a.action, a.subject, a.seq, a.digest) for a in batched_registry.store.audit] == [
        (a.action, a.subject, a.seq, a.digest) for a in one_by_one.store.audit
    ]


def test_a_recovery_error_outside_the_rules_reaches_the_caller() -> None:
    """A worker's non-rule failure (not an event's fault) is raised, as a Future would raise it."""
    items = _items()
    registry = Registry(DOMAIN, MemoryStore(), clock=CLOCK)
    counter = itertools.count()

    class Failing:
        def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
            future: Future[Any] = Future()
            assert future.set_running_or_notify_cancel()
            if next(counter) == 2:
                future.set_exception(MemoryError("out of memory"))
            else:
                future.set_result(fn(*args))
            return future

    registry.recovery.executor = Failing()  # type: ignore[assignment]
    with pytest.raises(MemoryError):
        registry.ingest(items)
    assert registry.store.audit_head()[0] == 0  # nothing committed
