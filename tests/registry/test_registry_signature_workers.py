"""Signature workers (``[ingest] signature_workers``, node.signature_workers): bulk batches recover
their signers on a real process pool; whatever happens to it (alive, a worker killed before or
during a batch, stopped, closed), every batch gets the results that ingesting its events one at a
time gives, and no worker outlives the node.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from keyreg import registry as registry_module
from keyreg.registry import Registry
from keyreg.signature_workers import SignatureWorkers, SignerBatch, recover_chunk
from keyreg.store.memory import MemoryStore
from tests.store.streams import DOMAIN, mixed_items

CLOCK = lambda: 1_800_000_000  # noqa: E731
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 32 events, so the batches below span several tasks."""
    monkeypatch.setattr(registry_module, "CHUNK", 32)


def _one_by_one(items: list[bytes]) -> list[dict[str, object]]:
    registry = Registry(DOMAIN, MemoryStore(), clock=CLOCK)
    return [registry.ingest([item])[0].to_dict() for item in items]


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = Registry(DOMAIN, MemoryStore(), clock=CLOCK, signature_workers=2)
    yield reg
    reg.close()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"  # a zombie has exited
    except OSError:  # gone (the file, or the process while it was read)
        return False


def _started(registry: Registry) -> list[int]:
    """Warm the pool up until both workers have answered; their pids."""
    items = mixed_items(20, 40, 5)
    _wait_for(
        lambda: (
            registry.ingest(items, "sync", False, bulk=True) is not None and len(registry.signature_workers.pids()) == 2
        ),
        "both workers to answer",
        60.0,
    )
    return registry.signature_workers.pids()


def test_bulk_batches_recovered_by_the_workers_match_one_by_one_ingest(registry: Registry) -> None:
    items = mixed_items(21, 40, 5)
    assert registry.prepare(items, bulk=True).signers is None  # the first starts the workers: in-line
    pids = _started(registry)
    fresh = Registry(DOMAIN, MemoryStore(), clock=CLOCK)
    fresh.signature_workers = registry.signature_workers  # the warm pool, on a registry without these events
    batch = fresh.prepare(items, bulk=True)
    assert batch.signers is not None
    got = [r.to_dict() for r in fresh.ingest_prepared(batch)]
    assert got == _one_by_one(items)
    codes = {r["error"]["code"] for r in got if "error" in r}  # type: ignore[index]
    assert {"malformed", "bad_signature", "unauthorized_signer"} <= codes, codes
    assert not registry.signature_workers.failed
    assert registry.signature_workers.cpu_seconds() > 0
    assert all(_alive(pid) for pid in pids)


def test_prepared_batches_ingested_later_give_the_same_results(registry: Registry) -> None:
    items = mixed_items(22, 40, 5)
    _started(registry)
    half = len(items) // 2
    first, second = registry.prepare(items[:half], True), registry.prepare(items[half:], True)  # both in flight
    got = registry.ingest_prepared(first) + registry.ingest_prepared(second)
    assert [r.to_dict() for r in got] == _one_by_one(items)


def test_a_worker_killed_between_batches_falls_back_in_line(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    pids = _started(registry)
    os.kill(pids[0], signal.SIGKILL)
    seeds = iter(range(100, 200))

    def batch_right_and_death_noticed() -> bool:
        # Until the pool's thread sees the death, the live worker may still answer a whole batch;
        # once it has, the batch's chunks fail and are recovered in-line. Either way every
        # batch's results are exactly the one-by-one results.
        items = mixed_items(next(seeds), 20, 4)
        got = registry.ingest(items, bulk=True)
        assert [r.to_dict() for r in got] == _one_by_one(items)
        return registry.signature_workers.failed

    with caplog.at_level(logging.WARNING, "keyreg.signature_workers"):
        _wait_for(batch_right_and_death_noticed, "the pool to notice the killed worker")
    assert "signature workers failed" in caplog.text
    more = mixed_items(24, 20, 4)
    assert registry.prepare(more, bulk=True).signers is None  # in-line from now on
    assert [r.to_dict() for r in registry.ingest(more, bulk=True)] == _one_by_one(more)
    _wait_for(lambda: not _alive(pids[1]), "the other worker to end")


def test_a_worker_killed_while_its_batch_is_in_flight_loses_nothing(registry: Registry) -> None:
    items = mixed_items(25, 40, 5)
    pids = _started(registry)
    batch = registry.prepare(items, bulk=True)
    os.kill(pids[1], signal.SIGKILL)
    assert [r.to_dict() for r in registry.ingest_prepared(batch)] == _one_by_one(items)


def test_a_stopped_worker_is_given_up_after_its_timeout_and_killed(registry: Registry) -> None:
    items = mixed_items(28, 40, 5)
    pids = _started(registry)
    registry.signature_workers.timeout_s = 0.5
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        got = registry.ingest(items, bulk=True)
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGCONT)
    assert [r.to_dict() for r in got] == _one_by_one(items)
    assert registry.signature_workers.failed
    _wait_for(lambda: not any(_alive(pid) for pid in pids), "the stopped workers to be killed")


def test_only_bulk_batches_go_to_the_workers(registry: Registry) -> None:
    items = mixed_items(27, 40, 5)
    assert registry.prepare(items).signers is None
    assert [r.to_dict() for r in registry.ingest(items, "gossip", True)] == _one_by_one(items)
    assert registry.signature_workers.pids() == []  # none started
    assert Registry(DOMAIN, MemoryStore()).prepare(items, bulk=True).signers is None  # no workers: in-line


def test_close_ends_the_workers(registry: Registry) -> None:
    pids = _started(registry)
    registry.close()
    _wait_for(lambda: not any(_alive(pid) for pid in pids), "the workers to exit")


def test_workers_exit_when_the_node_is_killed_outright(tmp_path: Path) -> None:
    """A node killed with SIGKILL cannot end its pool: each worker watches its parent."""
    script = tmp_path / "a_node.py"  # not node.py: that would shadow the package
    script.write_text(
        "import sys\n"
        "from keyreg.registry import Registry\n"
        "from keyreg.store.memory import MemoryStore\n"
        "from tests.store.streams import DOMAIN, mixed_items\n"
        "if __name__ == '__main__':\n"
        "    reg = Registry(DOMAIN, MemoryStore(), clock=lambda: 1_800_000_000, signature_workers=2)\n"
        "    items = mixed_items(30, 60, 5)\n"
        "    while len(reg.signature_workers.pids()) < 2:\n"
        "        reg.ingest(items, 'sync', False, bulk=True)\n"
        "    print(*reg.signature_workers.pids(), flush=True)\n"
        "    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        pids = [int(x) for x in proc.stdout.readline().split()]
        assert len(pids) == 2
        assert all(_alive(pid) for pid in pids)
        from keyreg.p2p.testing import child_pids, process_cpu_seconds

        assert set(pids) <= set(child_pids(proc.pid))  # NodeProcess.cpu_seconds counts them
        assert process_cpu_seconds(pids[0]) > 0
    finally:
        proc.kill()
        proc.communicate(timeout=10)  # reaps it and closes its pipes
    _wait_for(lambda: not any(_alive(pid) for pid in pids), "the orphaned workers to exit")


class _Controlled:
    """Per submitted chunk, by ``runs(i)``: "done" at once, "running" (finished when waited for),
    or anything else: never started (the future stays pending, so the ingesting thread takes it)."""

    def __init__(self, runs: Callable[[int], str]) -> None:
        self.runs = runs
        self.submitted = 0

    def submit(self, work: Any) -> Future[Any]:
        how = self.runs(self.submitted)
        self.submitted += 1
        future: Future[Any] = Future()
        if how == "done":
            assert future.set_running_or_notify_cancel()
            future.set_result(recover_chunk(work))
        elif how == "running":
            assert future.set_running_or_notify_cancel()  # cannot be cancelled any more
            original = future.result

            def result(timeout: float | None = None) -> Any:
                if not future.done():
                    future.set_result(recover_chunk(work))
                return original(timeout)

            future.result = result  # type: ignore[method-assign]
        return future


@pytest.mark.parametrize(
    "runs",
    [
        lambda i: "pending",
        lambda i: "done",
        lambda i: "running",
        lambda i: "done" if i % 2 else "pending",
        lambda i: ("running", "pending", "done")[i % 3],
    ],
    ids=["never-started", "done", "running", "odd-done", "mixed"],
)
def test_whoever_recovers_a_chunk_the_results_match_one_by_one_ingest(runs: Callable[[int], str]) -> None:
    items = mixed_items(11, 24, 6)
    assert len(items) >= 4 * registry_module.CHUNK
    # Every rejection audited one by one, as the one-by-one registry does (no summary entry).
    batched = Registry(DOMAIN, MemoryStore(), clock=CLOCK, reject_audits_per_batch=len(items))
    workers = SignatureWorkers(2)
    controlled = _Controlled(runs)
    workers.batch = lambda: SignerBatch(workers)  # type: ignore[method-assign]
    workers.submit = controlled.submit  # type: ignore[method-assign,assignment]
    batched.signature_workers = workers
    got = batched.ingest(items, "sync", bulk=True)
    assert controlled.submitted == -(-len(items) // registry_module.CHUNK)
    one_by_one = Registry(DOMAIN, MemoryStore(), clock=CLOCK)
    expected = [one_by_one.ingest([item])[0] for item in items]
    assert [r.to_dict() for r in got] == [r.to_dict() for r in expected]
    codes = {r.error.code for r in got if r.error is not None}
    assert {"malformed", "unauthorized_signer", "bad_signature"} <= codes, codes
    assert [(a.action, a.subject, a.seq, a.digest) for a in batched.store.audit] == [
        (a.action, a.subject, a.seq, a.digest) for a in one_by_one.store.audit
    ]


def test_an_error_outside_the_rules_reaches_the_caller() -> None:
    """A task's non-rule failure (not an event's fault) is raised, as its Future raises it."""
    items = mixed_items(12, 24, 6)
    registry = Registry(DOMAIN, MemoryStore(), clock=CLOCK)
    workers = SignatureWorkers(2)

    def submit(work: Any) -> Future[Any]:
        future: Future[Any] = Future()
        assert future.set_running_or_notify_cancel()
        future.set_exception(MemoryError("out of memory"))
        return future

    workers.batch = lambda: SignerBatch(workers)  # type: ignore[method-assign]
    workers.submit = submit  # type: ignore[method-assign,assignment]
    registry.signature_workers = workers
    with pytest.raises(MemoryError):
        registry.ingest(items, bulk=True)
    assert registry.store.audit_head()[0] == 0  # nothing committed


def test_signature_workers_are_configured_checked_and_read_from_the_old_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyreg.config import load_config
    from keyreg.core.errors import ConfigError

    assert load_config(tmp_path).ingest.signature_workers == 2
    monkeypatch.setenv("KEYREG_INGEST_SIGNATURE_WORKERS", "0")
    assert load_config(tmp_path).ingest.signature_workers == 0
    monkeypatch.setenv("KEYREG_INGEST_SIGNATURE_WORKERS", "65")
    with pytest.raises(ConfigError, match=r"ingest\.signature_workers"):
        load_config(tmp_path)
    monkeypatch.delenv("KEYREG_INGEST_SIGNATURE_WORKERS")
    with pytest.raises(ValueError, match="signature workers must be"):
        Registry(DOMAIN, MemoryStore(), signature_workers=-1)
    # keyreg.toml files written before ADR 0023 hold [ingest] recovery: still read.
    toml = tmp_path / "keyreg.toml"
    for old, workers in (("auto", 2), ("process", 2), ("threads", 0)):
        toml.write_text(f'[ingest]\nrecovery = "{old}"\n')
        assert load_config(tmp_path).ingest.signature_workers == workers
    toml.write_text('[ingest]\nrecovery = "gpu"\n')
    with pytest.raises(ConfigError, match=r"ingest\.recovery"):
        load_config(tmp_path)
    toml.unlink()
    rendered = load_config(tmp_path, {"ingest": {"signature_workers": 1}}).to_toml()
    assert "signature_workers = 1" in rendered
    assert "recovery" not in rendered
    assert SignatureWorkers(2).processes == (min(2, os.cpu_count() or 1) if (os.cpu_count() or 1) >= 2 else 0)
