"""Signature recovery on the helper process (``[ingest] recovery = "process"``, node.recoverd).

The helper is a real child process fed through pipes. Whatever happens to it (alive, killed
before or during a batch, slow to be read), every batch gets the results that ingesting its
events one at a time gives.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading

import pytest
from coincurve import PrivateKey

from node import recovery as recovery_module
from node.core.hashing import address_of_public_key
from node.core.log import signers_of
from node.recoverd import recover_body
from node.recovery import RecoveryProcess, short_switch_interval
from node.registry import Registry
from node.store.memory import MemoryStore
from tests.store.streams import DOMAIN, mixed_items

CLOCK = lambda: 1_800_000_000  # noqa: E731


def _one_by_one(items: list[bytes]) -> list[dict[str, object]]:
    registry = Registry(DOMAIN, MemoryStore(), clock=CLOCK, recovery="threads")
    return [registry.ingest([item])[0].to_dict() for item in items]


@pytest.fixture
def registry():  # type: ignore[no-untyped-def]
    reg = Registry(DOMAIN, MemoryStore(), clock=CLOCK, recovery="process", recovery_processes=2)
    yield reg
    reg.close()


def _kill(helper: RecoveryProcess) -> None:
    os.kill(helper.pid, signal.SIGKILL)
    helper._proc.wait(10)


def test_batches_recovered_by_the_helpers_match_one_by_one_ingest(registry: Registry) -> None:
    items = mixed_items(21, 40, 5)
    results = [r.to_dict() for r in registry.ingest(items, bulk=True)]
    assert results == _one_by_one(items)
    assert len(registry.recovery.helpers) == 2
    assert all(h._proc.poll() is None for h in registry.recovery.helpers)
    codes = {r["error"]["code"] for r in results if "error" in r}  # type: ignore[index]
    assert {"malformed", "bad_signature", "unauthorized_signer"} <= codes, codes
    assert registry.recovery.mode == "process"


def test_prepared_batches_ingested_later_give_the_same_results(registry: Registry) -> None:
    items = mixed_items(22, 40, 5)
    half = len(items) // 2
    first, second = registry.prepare(items[:half], True), registry.prepare(items[half:], True)  # both in flight
    got = registry.ingest_prepared(first) + registry.ingest_prepared(second)
    assert [r.to_dict() for r in got] == _one_by_one(items)


def test_a_helper_killed_between_batches_falls_back_to_threads(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    items = mixed_items(23, 40, 5)
    half = len(items) // 2
    registry.ingest(items[:half], bulk=True)
    _kill(registry.recovery.helpers[0])
    with caplog.at_level(logging.WARNING, "keyreg.recovery"):
        rest = registry.ingest(items[half:], bulk=True)  # this batch's requests fail: recovered in-line
    assert [r.to_dict() for r in rest] == _one_by_one(items)[half:]
    assert "recovery helper" in caplog.text
    more = mixed_items(24, 20, 4)
    assert [r.to_dict() for r in registry.ingest(more, bulk=True)] == _one_by_one(more)
    assert registry.recovery.mode == "threads"


def test_a_helper_killed_while_its_batch_is_in_flight_loses_nothing(registry: Registry) -> None:
    items = mixed_items(25, 40, 5)
    batch = registry.prepare(items, bulk=True)
    _kill(registry.recovery.helpers[1])
    assert [r.to_dict() for r in registry.ingest_prepared(batch)] == _one_by_one(items)


def test_a_dropped_batch_leaves_no_responses_behind(registry: Registry) -> None:
    items = mixed_items(26, 40, 5)
    dropped = registry.prepare(items, bulk=True)
    del dropped
    gc.collect()
    assert [r.to_dict() for r in registry.ingest(items, bulk=True)] == _one_by_one(items)
    for helper in registry.recovery.helpers:
        assert helper._results == {}
        assert helper._abandoned == set()


def _signed(n: int, digest: bytes) -> tuple[list[bytes], list[bytes]]:
    keys = [PrivateKey() for _ in range(n)]
    pairs = []
    for k in keys:
        sig = k.sign_recoverable(digest, hasher=None)
        pairs.append((address_of_public_key(k.public_key), sig[:64] + bytes([sig[64] + 27])))
    pairs.sort()
    return [a for a, _ in pairs], [s for _, s in pairs]


def _expected(digest: bytes, sigs: list[bytes]) -> bytes:
    try:
        signers = signers_of(digest, sigs)
    except Exception:
        return b"\x00"
    return bytes([len(signers)]) + b"".join(signers)


def test_the_helper_answers_as_signers_of_including_multisig_and_failures() -> None:
    digest = bytes(range(32))
    addresses, sigs = _signed(3, digest)
    cases = [
        sigs,  # ascending: the three signers
        sigs[::-1],  # descending: refused (UnauthorizedSigner) -> 0
        [sigs[0]],
        [sigs[0], sigs[0]],  # one signer twice -> 0
        [sigs[1][:64] + b"\x1d"],  # bad v -> 0
        [sigs[2][:32] + b"\xff" * 32 + sigs[2][64:]],  # high s -> 0
    ]
    body = bytearray()
    for case in cases:
        body.append(len(case))
        body += digest
        for s in case:
            body += s
    body.append(0)  # nothing to recover
    expected = b"".join(_expected(digest, c) for c in cases) + b"\x00"
    assert recover_body(bytes(body)) == expected
    assert expected[:61] == b"\x03" + b"".join(addresses)
    with pytest.raises(ValueError, match="truncated"):
        recover_body(bytes(body[:40]))


def test_many_requests_unread_do_not_deadlock_the_pipes() -> None:
    """More response bytes than the pipe holds: send reads older responses first."""
    helper = RecoveryProcess()
    try:
        helper._room = 200  # as if the pipe held 200 bytes: forces reads inside send
        digest = bytes(32)
        _, sigs = _signed(1, digest)
        body = (b"\x01" + digest + sigs[0]) * 8
        tickets = []
        for _ in range(50):
            tickets.append(helper.send(body, 8 * 21))
            assert helper._unread <= helper._room  # responses with their headers fit the pipe
        assert all(t is not None for t in tickets)
        answers = {helper.result(t) for t in reversed(tickets)}  # type: ignore[arg-type]
        assert answers == {recover_body(body)}
    finally:
        helper.close()
    assert helper._proc.poll() is not None


def test_the_helper_exits_when_closed_and_answers_none_after() -> None:
    helper = RecoveryProcess()
    helper.close()
    assert helper._proc.returncode is not None
    assert helper.send(b"\x00", 1) is None


def test_short_switch_interval_is_restored_once_by_the_last_of_overlapping_users() -> None:
    import sys

    original = sys.getswitchinterval()
    inside = threading.Event()
    leave = threading.Event()

    def other() -> None:
        with short_switch_interval():
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    with short_switch_interval():
        t.start()
        inside.wait(10)
        assert sys.getswitchinterval() == pytest.approx(min(original, recovery_module._SWITCH_S))
    assert sys.getswitchinterval() == pytest.approx(min(original, recovery_module._SWITCH_S))  # still in use
    leave.set()
    t.join(10)
    assert sys.getswitchinterval() == pytest.approx(original)


def test_the_recovery_setting_is_read_checked_and_resolved(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from node.config import load_config
    from node.core.errors import ConfigError

    assert load_config(tmp_path).ingest.recovery == "auto"
    monkeypatch.setenv("KEYREG_INGEST_RECOVERY", "threads")
    assert load_config(tmp_path).ingest.recovery == "threads"
    monkeypatch.setenv("KEYREG_INGEST_RECOVERY", "gpu")
    with pytest.raises(ConfigError, match=r"ingest\.recovery"):
        load_config(tmp_path)
    with pytest.raises(ValueError, match="recovery must be one of"):
        Registry(DOMAIN, MemoryStore(), recovery="gpu")
    auto = Registry(DOMAIN, MemoryStore(), recovery="auto")
    assert auto.recovery.mode == ("process" if (os.cpu_count() or 1) >= 2 else "threads")
    assert load_config(tmp_path, {"ingest": {"recovery": "process"}}).to_toml().count('recovery = "process"') == 1


def test_helpers_started_from_any_thread_are_found_for_cpu_accounting() -> None:
    """The benches add the helpers' CPU to a node's (NodeProcess.cpu_seconds): a helper started
    by an ingesting thread is a child of that thread's task in /proc."""
    from node.p2p.testing import child_pids

    started: list[RecoveryProcess] = []
    t = threading.Thread(target=lambda: started.append(RecoveryProcess()))
    t.start()
    t.join(30)
    try:
        assert started[0].pid in child_pids(os.getpid())
        assert started[0].cpu_seconds() >= 0.0
    finally:
        started[0].close()
    assert started[0].cpu_seconds() == 0.0  # gone: unknown


def test_only_bulk_batches_go_to_the_helpers(registry: Registry) -> None:
    items = mixed_items(27, 40, 5)
    assert [r.to_dict() for r in registry.ingest(items, "gossip", True)] == _one_by_one(items)
    assert registry.recovery.helpers == []  # none started
    assert registry.recovery.executor is not None


def test_a_stuck_helper_is_given_up_after_its_timeout(registry: Registry) -> None:
    items = mixed_items(28, 40, 5)
    registry.ingest(items[:64], bulk=True)  # starts the helpers
    for helper in registry.recovery.helpers:
        helper.timeout_s = 0.5
    os.kill(registry.recovery.helpers[0].pid, signal.SIGSTOP)
    try:
        got = registry.ingest(items, bulk=True)
    finally:
        os.kill(registry.recovery.helpers[0].pid, signal.SIGKILL)
    assert [r.to_dict() for r in got] == _one_by_one(items[:64] + items)[64:]  # the first 64 again: known
    assert registry.recovery.helpers[0].failed


def test_abandon_takes_no_lock_so_a_collected_batch_cannot_deadlock_its_helper() -> None:
    """``_ProcessRecovery.__del__`` may run inside any allocation, even one made while this
    thread holds the helper's lock; the abandoned tickets are settled by the next call."""
    helper = RecoveryProcess()
    try:
        digest = bytes(32)
        _, sigs = _signed(1, digest)
        body = b"\x01" + digest + sigs[0]
        first, second = helper.send(body, 21), helper.send(body, 21)
        with helper._lock:
            helper.abandon([first])  # would deadlock if it took the lock
        assert helper.result(second) == recover_body(body)  # type: ignore[arg-type]
        assert helper._results == {}
        assert helper._abandoned == set()
    finally:
        helper.close()


def test_failed_helpers_are_ended_when_the_registry_moves_to_threads(registry: Registry) -> None:
    items = mixed_items(29, 40, 5)
    registry.ingest(items, bulk=True)
    helpers = list(registry.recovery.helpers)
    _kill(helpers[0])
    registry.ingest(items, bulk=True)  # notices the failure (recovered in-line)
    registry.ingest(items, bulk=True)  # moves to threads and ends the other helper
    assert registry.recovery.mode == "threads"
    assert registry.recovery.helpers == []
    assert all(h._proc.poll() is not None for h in helpers)
