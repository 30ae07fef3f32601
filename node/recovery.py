"""Signature recovery for large ingest batches, beside the ingesting thread (used by ``node.registry``).

Two ways, chosen by ``[ingest] recovery`` (docs/adr/0010-recovery-process.md):

* ``process``: a helper process (:mod:`node.recoverd`) per node, fed through pipes
  (:class:`RecoveryProcess`, one :class:`_ProcessRecovery` per batch). It recovers under its own
  GIL, on its own core.
* ``threads``: worker threads (:class:`_Recovery`). libsecp256k1 through cffi releases the GIL
  during the curve arithmetic, but a worker needs the GIL back after every signature; while the
  ingesting thread runs Python, it waits up to the switch interval for it. With a thread spinning
  Python beside them, two workers recovered 3,100 signatures/s at a 0.2 ms switch interval and
  210/s at the default 5 ms, against 8,900/s for one thread alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from .core.errors import RuleViolation
from .core.log import recover_signers
from .core.records import SignedEvent

log = logging.getLogger("keyreg.recovery")

# Signature recovery (libsecp256k1 through cffi, which releases the GIL) is ~half of validation.
# Batches of at least _PARALLEL_MIN events recover their signatures on worker threads, in chunks
# of _RECOVER_CHUNK, while this thread decodes and validates; apply_event then receives
# (digest, signers) instead of recomputing them. While a batch runs, the interpreter's switch
# interval is shortened (_SWITCH_S, restored after) so a worker gets the GIL back promptly after
# each C call instead of waiting out the default 5 ms.
# Two workers: once decoding and the rules got cheaper, one worker (which waits for the GIL after
# every recovery) fell behind, and the ingesting thread sat waiting for its chunks (31-110 µs per
# event in the ingest bench); with two, recovery also uses the ingesting thread's core while that
# thread waits (waiting ~1 µs per event, same CPU).
# The ingesting thread takes over chunks no worker has started rather than wait (_Recovery): waking
# a waiting thread for each chunk cost ~8% of a gossip node's CPU. Re-measured with that: chunks of
# 32/64/128 and switch intervals of 0.2/1/5 ms were within noise of each other (memory store, 8,000
# events in batches of 2,048); 32 and 0.2 ms kept.
_PARALLEL_MIN = 64
_RECOVER_CHUNK = 32
_RECOVER_THREADS = 2
_SWITCH_S = 0.0002

Prepared = tuple[SignedEvent | RuleViolation, bytes | None]  # (decoded or decode error, digest)

_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextmanager
def short_switch_interval() -> Iterator[None]:
    """The interpreter's switch interval at most _SWITCH_S while any thread is inside.

    Counted, so overlapping users on several threads (a sync pull and a gossip ingest) restore the
    original value once, when the last one leaves, instead of one restoring the other's setting.
    """
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, _SWITCH_S))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


def _recover_chunk(chunk: list[Prepared]) -> list[tuple[bytes, ...] | None]:
    """Signers per event, or None where there is nothing to recover or recovery failed.

    (apply_event then recomputes, and raises any error itself, in rule order.)
    """
    out: list[tuple[bytes, ...] | None] = []
    for signed, digest in chunk:
        try:
            out.append(None if digest is None else recover_signers(signed, digest))  # type: ignore[arg-type]
        except Exception:  # apply_event re-raises it, in rule order
            out.append(None)
    return out


class _Recovery:
    """One batch's signature recovery: chunks on the worker threads, taken in order by the
    ingesting thread.

    Handing a result from a worker to a *waiting* thread (``Future.set_result`` ->
    ``Condition.notify`` -> a thread wake-up and a GIL hand-off) cost ~8% of a gossip node's CPU.
    So the ingesting thread does not wait while there is recovery it can do itself: when the chunk
    it needs is not finished, it takes over the earliest chunk no worker has started (cancelling
    its future: a worker then skips it), and waits only when every chunk up to the one it needs is
    already running. Results and errors are the same whoever recovers a chunk.
    """

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._chunks: list[list[Prepared]] = []
        self._futures: list[Future[list[tuple[bytes, ...] | None]]] = []
        self._own: dict[int, list[tuple[bytes, ...] | None]] = {}  # chunks this thread recovered
        self._steal_from = 0  # chunks before this one are taken: running, done or in _own

    def submit(self, chunk: list[Prepared]) -> None:
        """Queue the next chunk for the workers."""
        self._chunks.append(chunk)
        self._futures.append(self._executor.submit(_recover_chunk, chunk))

    def take(self, index: int) -> list[tuple[bytes, ...] | None]:
        """The signers of chunk ``index`` (chunks are taken in ascending order)."""
        own = self._own.pop(index, None)
        if own is not None:
            return own
        future = self._futures[index]
        futures = self._futures
        while not future.done():
            k = max(self._steal_from, index)
            while k < len(futures) and not futures[k].cancel():  # cancel() fails once a worker started it
                k += 1
            self._steal_from = k + 1
            if k >= len(futures):
                break  # every chunk is running or done: wait for ours
            recovered = _recover_chunk(self._chunks[k])
            if k == index:
                return recovered
            self._own[k] = recovered
        return future.result()


# ---------------------------------------------------------------------------------------------
# The helper process

_HEADER = struct.Struct("<I")
_PIPE_BYTES = 1024 * 1024
# A helper that neither reads nor answers for this long (stopped, swapped out, wedged) is killed
# and its batches are recovered in-line. A chunk takes milliseconds.
HELPER_TIMEOUT_S = 30.0  # asked of the kernel for both pipes (Linux's default ceiling for users)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc (0.0 where unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _pipe_bytes(fd: int) -> int:
    """Grow the pipe behind ``fd`` to _PIPE_BYTES if the kernel allows; its capacity after."""
    if sys.platform != "linux":
        return 16 * 1024  # the smallest pipe buffer of the platforms we know
    import fcntl

    with contextlib.suppress(OSError):  # a lower pipe-max-size: keep what we have
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
    size: int = fcntl.fcntl(fd, getattr(fcntl, "F_GETPIPE_SZ", 1032))
    return size


class RecoveryProcess:
    """The node's recovery helper (``python -m node.recoverd``) and its two pipes.

    Requests are written in order and their responses read in order, under one lock, by whichever
    ingesting thread needs one (a blocking read releases the GIL). No deadlock: the helper blocks
    only when its responses fill the stdout pipe, so before each request the response bytes not
    yet read, plus the new response's largest size, are kept within that pipe's capacity (older
    responses are read first). Then the helper always goes back to reading requests, and a write
    of ours can wait only for it to do so.

    If the helper dies, breaks the framing, or neither reads nor answers for ``timeout_s``,
    :attr:`failed` is set, it is killed, and every
    pending or later request answers None ("not recovered": the registry recovers those in-line,
    with the same results); the registry then goes back to threads, with a warning.
    """

    def __init__(self, timeout_s: float = HELPER_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._proc = subprocess.Popen(  # our own interpreter and module
            [sys.executable, "-m", "node.recoverd"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            # It needs nothing of ours: no KEYREG_* settings (a password file's path, say).
            env={k: v for k, v in os.environ.items() if not k.startswith("KEYREG_")},
        )
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._in = self._proc.stdin.fileno()
        self._out = self._proc.stdout.fileno()
        os.set_blocking(self._in, False)  # a stuck helper cannot block a write past timeout_s
        _pipe_bytes(self._in)
        self._room = _pipe_bytes(self._out)
        self._lock = threading.Lock()
        self._sent = 0  # tickets issued
        self._read = 0  # responses read (tickets below this have theirs in _results, or dropped)
        self._pending: deque[int] = deque()  # largest framed size of each response not yet read, in order
        self._unread = 0  # sum of _pending
        self._buf = bytearray()
        self._results: dict[int, bytes] = {}
        self._abandoned: set[int] = set()  # tickets whose batch went away: drop their responses
        self._dropped: deque[int] = deque()  # abandoned, not yet settled (see abandon)
        self.failed = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU the helper has used (from /proc; 0.0 where unknown or once it exited)."""
        return process_cpu_seconds(self._proc.pid)

    def send(self, body: bytes, largest_response: int) -> int | None:
        """Queue a request; its ticket for :meth:`result` (None: the helper has failed)."""
        with self._lock:
            self._settle()
            if self.failed:
                return None
            framed = largest_response + _HEADER.size  # what the helper may write for it
            try:
                while self._pending and self._unread + framed > self._room:
                    self._read_one()
                self._write(_HEADER.pack(len(body)) + body)
            except (OSError, ValueError) as exc:
                self._fail(exc)
                return None
            ticket = self._sent
            self._sent += 1
            self._pending.append(framed)
            self._unread += framed
            return ticket

    def result(self, ticket: int) -> bytes | None:
        """The response to ``ticket`` (blocking until it is read); None if the helper failed."""
        with self._lock:
            self._settle()
            try:
                while ticket >= self._read and not self.failed:
                    self._read_one()
            except (OSError, ValueError) as exc:
                self._fail(exc)
            return self._results.pop(ticket, None)

    def abandon(self, tickets: list[int | None]) -> None:
        """Tickets whose responses nobody will ask for (a batch dropped before it was ingested).

        Called from ``__del__``, which may run inside any allocation, even in a thread that holds
        our lock: so it takes no lock, and the next send or result settles them (_settle).
        """
        self._dropped.extend(t for t in tickets if t is not None)

    def _settle(self) -> None:
        """Forget abandoned tickets' responses: read ones now, later ones as they arrive (lock held)."""
        dropped = self._dropped
        while dropped:
            t = dropped.popleft()
            if self._results.pop(t, None) is None and t >= self._read:
                self._abandoned.add(t)

    def close(self) -> None:
        """End the helper (it exits at end of input); killed if it has not within a second."""
        with self._lock:
            self.failed = True
            proc = self._proc
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._in, view)
            except BlockingIOError:  # the pipe is full (our end is non-blocking)
                n = 0
            view = view[n:]
            if view and not select.select([], [self._in], [], self.timeout_s)[1]:
                raise TimeoutError(f"the recovery helper read nothing for {self.timeout_s:g} s")

    def _read_one(self) -> None:
        """Read the oldest pending response into _results (or drop it if abandoned)."""
        while True:
            buf = self._buf
            if len(buf) >= 4:
                (length,) = _HEADER.unpack_from(buf)
                expected = self._pending[0] - _HEADER.size
                if length > expected:
                    raise ValueError(f"response of {length} bytes where at most {expected} were due")
                if len(buf) >= 4 + length:
                    ticket = self._read
                    if ticket in self._abandoned:
                        self._abandoned.discard(ticket)
                    else:
                        self._results[ticket] = bytes(buf[4 : 4 + length])
                    del buf[: 4 + length]
                    self._read += 1
                    self._unread -= self._pending.popleft()
                    return
            if not select.select([self._out], [], [], self.timeout_s)[0]:
                raise TimeoutError(f"the recovery helper answered nothing for {self.timeout_s:g} s")
            data = os.read(self._out, 1 << 20)
            if not data:
                raise ValueError("the recovery helper exited")
            buf += data

    def _fail(self, exc: BaseException) -> None:
        if not self.failed:
            log.warning("signature recovery helper (pid %d) failed: %s; recovering in-process", self.pid, exc)
        self.failed = True
        self._results.clear()
        if self._proc.poll() is None:
            self._proc.kill()


_SIGNATURE_BYTES = 65
_MAX_SIGNATURES = 255  # one byte in the framing; limits allow far fewer


class _ProcessRecovery:
    """One batch's signature recovery on the helper process: a request per chunk, sent as the
    chunk is prepared; :meth:`take` reads the responses in order. Same results as
    :class:`_Recovery`: per event the signers, or None where there was nothing to recover or it
    failed (apply_event then recovers and raises the exact error)."""

    def __init__(self, helpers: list[RecoveryProcess]) -> None:
        self._helpers = helpers
        self._tickets: list[int | None] = []
        self._sizes: list[int] = []

    def submit(self, chunk: list[Prepared]) -> None:
        body = bytearray()
        largest = 0
        for signed, digest in chunk:
            sigs = () if digest is None or isinstance(signed, RuleViolation) else signed.signatures
            n = len(sigs)
            if n == 0 or n > _MAX_SIGNATURES or any(len(s) != _SIGNATURE_BYTES for s in sigs):
                body.append(0)  # nothing to recover, or apply_event reports the malformed signature
                largest += 1
                continue
            body.append(n)
            body += digest  # type: ignore[arg-type]  # not None here
            for s in sigs:
                body += s
            largest += 1 + 20 * n
        helpers = self._helpers
        self._tickets.append(helpers[len(self._tickets) % len(helpers)].send(bytes(body), largest))
        self._sizes.append(len(chunk))

    def take(self, index: int) -> list[tuple[bytes, ...] | None]:
        ticket = self._tickets[index]
        self._tickets[index] = None
        n = self._sizes[index]
        helpers = self._helpers
        response = None if ticket is None else helpers[index % len(helpers)].result(ticket)
        if response is None:
            return [None] * n
        out: list[tuple[bytes, ...] | None] = []
        pos = 0
        try:
            for _ in range(n):
                k = response[pos]
                pos += 1
                if k == 0:
                    out.append(None)
                elif k == 1:
                    out.append((response[pos : pos + 20],))
                    pos += 20
                else:
                    out.append(tuple([response[pos + 20 * j : pos + 20 * j + 20] for j in range(k)]))
                    pos += 20 * k
        except IndexError:
            return [None] * n
        if pos != len(response):
            return [None] * n
        return out

    def __del__(self) -> None:
        helpers, tickets = self._helpers, self._tickets
        for k, helper in enumerate(helpers):
            mine = tickets[k :: len(helpers)]
            if any(t is not None for t in mine):
                helper.abandon(mine)


# ---------------------------------------------------------------------------------------------
# One registry's choice of the two

RECOVERY_MODES = ("auto", "process", "threads")  # [ingest] recovery; "auto" = "process" with 2+ CPUs


class RecoveryPool:
    """How one registry recovers the signatures of large batches: bulk batches (sync pulls) on
    helper processes when the mode is "process", everything else on worker threads. Both start on
    first use. Thread-safe: batches are prepared outside the registry's lock.

    A failed helper (it warned) moves the pool to threads for good, and the helpers are ended.
    """

    def __init__(self, mode: str = "threads", processes: int = 0) -> None:
        if mode not in RECOVERY_MODES:
            raise ValueError(f"recovery must be one of {', '.join(RECOVERY_MODES)}, not {mode!r}")
        cpus = os.cpu_count() or 1
        self.mode = ("process" if cpus >= 2 else "threads") if mode == "auto" else mode
        self.processes = processes or max(1, min(2, cpus))
        self.helpers: list[RecoveryProcess] = []
        self.executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def batch(self, bulk: bool = False) -> _Recovery | _ProcessRecovery:
        """A new batch's recovery: on the helpers (a bulk batch, mode "process") or worker threads."""
        with self._lock:
            if bulk and self.mode == "process":
                helpers = self.helpers
                if any(h.failed for h in helpers):
                    self.mode = "threads"
                    self.helpers = []
                    for h in helpers:
                        h.close()
                else:
                    try:
                        while len(helpers) < self.processes:
                            helpers.append(RecoveryProcess())
                    except OSError as exc:
                        log.warning("cannot start a signature recovery helper (%s); using threads", exc)
                        self.mode = "threads"
                    else:
                        return _ProcessRecovery(helpers)
            if self.executor is None:
                self.executor = ThreadPoolExecutor(_RECOVER_THREADS, thread_name_prefix="keyreg-recover")
            return _Recovery(self.executor)

    def cpu_seconds(self) -> float:
        """CPU seconds the helper processes have used so far (0.0 with threads)."""
        return sum(h.cpu_seconds() for h in list(self.helpers))

    def close(self) -> None:
        """End the helpers and the worker threads (a later batch starts them again)."""
        with self._lock:
            helpers, self.helpers = self.helpers, []
            executor, self.executor = self.executor, None
        for helper in helpers:
            helper.close()
        if executor is not None:
            executor.shutdown(wait=False)
