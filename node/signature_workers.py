"""Signature workers: processes that recover the signers of sync batches beside the ingesting thread.

Recovering a signature's public key (libsecp256k1 through coincurve) is the largest cost of ingesting
an event. coincurve releases the GIL inside the curve arithmetic but needs it back after every
signature, so threads recovering beside a thread that runs Python mostly wait for the GIL. A bulk
load (a sync pull, which has the node's cores to itself) therefore hands chunks of (digest,
signatures) to a :class:`~concurrent.futures.ProcessPoolExecutor`, whose workers recover under their
own GILs; the registry takes each chunk's signers, in order, when its rules need them. Every other
batch, and every batch when there are no workers, recovers in-line, in ``apply_event``
(docs/adr/0023-signature-workers.md).

The workers are started with "spawn" and hold no state: a task is plain bytes in, addresses out.
A chunk the pool cannot answer (a worker died, or no answer within ``timeout_s``) is recovered
in-line with the same results, and the pool is given up for good with one warning.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .core.errors import RuleViolation
from .core.log import signers_of
from .core.records import SignedEvent

log = logging.getLogger("keyreg.signature_workers")

# Events per task. A task costs a few hundred microseconds of hand-over (pickling, two queue
# threads in this process); 256 events are ~25 ms of work.
CHUNK = 256
MIN_BATCH = 64  # smaller bulk batches recover in-line
TIMEOUT_S = 30.0  # a chunk not answered in this long gives the pool up (a stopped or wedged worker)
MAX_WORKERS = 64

Prepared = tuple[SignedEvent | RuleViolation, bytes | None]  # (decoded or decode error, digest)
Signers = tuple[bytes, ...] | None  # None: not recovered here, so apply_event recovers it itself
Work = list[tuple[bytes, tuple[bytes, ...]] | None]  # per event (digest, signatures), or None


def recover_chunk(work: Work) -> tuple[list[Signers], int, float]:
    """The signers of each event of a chunk (run in a worker), with the worker's pid and its CPU
    seconds so far (for the node's CPU accounting).

    An event whose signatures do not recover gets None: apply_event then recovers it again and
    raises the exact error, in rule order.
    """
    out: list[Signers] = []
    for item in work:
        if item is None:
            out.append(None)
            continue
        try:
            out.append(signers_of(*item))
        except Exception:  # apply_event re-raises it, in rule order
            out.append(None)
    return out, os.getpid(), time.process_time()


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group: the node ends the pool when it shuts down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:  # a node killed outright cannot end us: exit when it is gone
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(0)


class SignatureWorkers:
    """One registry's worker processes (started on first use; thread-safe)."""

    def __init__(self, processes: int = 0, timeout_s: float = TIMEOUT_S) -> None:
        if not 0 <= processes <= MAX_WORKERS:
            raise ValueError(f"signature workers must be 0 to {MAX_WORKERS}, not {processes}")
        cpus = os.cpu_count() or 1
        # On one CPU a worker only adds hand-over costs to the same core.
        self.processes = min(processes, cpus) if cpus >= 2 else 0
        self.timeout_s = timeout_s
        self.failed = False
        self._executor: ProcessPoolExecutor | None = None
        self._started: list[Future[tuple[list[Signers], int, float]]] = []  # one empty task per worker
        self._cpu: dict[int, float] = {}  # worker pid -> its CPU seconds at its latest answer
        self._cpu_lock = threading.Lock()  # guards _cpu only: taken by the pool's thread too
        self._lock = threading.Lock()  # guards the executor

    def batch(self) -> SignerBatch | None:
        """A new batch's chunks for the workers; None (recover in-line) when there are none, or
        while they start: the first call starts them, and batches use them once one has answered,
        so an ingest never waits for a worker's interpreter to start."""
        if self.processes == 0 or self.failed:
            return None
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    self.processes, multiprocessing.get_context("spawn"), initializer=_init_worker
                )
                self._started = [self._executor.submit(recover_chunk, []) for _ in range(self.processes)]
                for future in self._started:
                    future.add_done_callback(self._note)
        if not any(future.done() for future in self._started):
            return None
        return SignerBatch(self)

    def submit(self, work: Work) -> Future[tuple[list[Signers], int, float]] | None:
        """Queue a chunk; None when the pool has been given up."""
        with self._lock:
            if self.failed or self._executor is None:
                return None
            try:
                return self._executor.submit(recover_chunk, work)
            except RuntimeError as exc:  # BrokenProcessPool, or shut down
                error: BaseException = exc
        self.give_up(error)
        return None

    def _note(self, future: Future[tuple[list[Signers], int, float]]) -> None:
        """Record a start-up task's worker (run by the pool's thread when it is done, or at once
        by add_done_callback if it already is: so it must not take ``_lock``)."""
        if not future.cancelled() and future.exception() is None:
            _, pid, cpu = future.result()
            with self._cpu_lock:
                self._cpu[pid] = cpu

    def result(self, future: Future[tuple[list[Signers], int, float]]) -> list[Signers] | None:
        """A submitted chunk's signers; None (recover in-line) if no worker had started it yet
        or the pool failed."""
        if future.cancel():  # still queued: the ingesting thread recovers it rather than wait
            return None
        try:
            signers, pid, cpu = future.result(self.timeout_s)
        except (BrokenProcessPool, TimeoutError) as exc:
            self.give_up(exc)
            return None
        with self._cpu_lock:
            self._cpu[pid] = cpu
        return signers

    def give_up(self, exc: BaseException) -> None:
        """End the pool for good (one warning); later batches recover in-line."""
        with self._lock:
            if self.failed:
                return
            self.failed = True
            executor, self._executor = self._executor, None
        log.warning("signature workers failed (%s); recovering signatures in-line from now on", exc or repr(exc))
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
            # A stopped or wedged worker never takes its end-of-work marker (and the interpreter
            # waits for every worker at exit): kill the live ones.
            workers = self.pids()
            for child in multiprocessing.active_children():
                if child.pid in workers:
                    child.kill()

    def cpu_seconds(self) -> float:
        """CPU seconds the workers had used by their latest answers."""
        with self._cpu_lock:
            return sum(self._cpu.values())

    def pids(self) -> list[int]:
        """The workers that have answered so far."""
        with self._cpu_lock:
            return list(self._cpu)

    def close(self) -> None:
        """End the workers (a later batch starts them again)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class SignerBatch:
    """One batch's chunks on the workers: :meth:`submit` them in order as they are prepared,
    :meth:`take` each one's signers in the same order."""

    def __init__(self, workers: SignatureWorkers) -> None:
        self._workers = workers
        self._futures: list[Future[tuple[list[Signers], int, float]] | None] = []

    def submit(self, chunk: list[Prepared]) -> None:
        work: Work = [
            None
            if digest is None or isinstance(signed, RuleViolation) or not signed.signatures
            else (digest, signed.signatures)
            for signed, digest in chunk
        ]
        self._futures.append(self._workers.submit(work))

    def take(self, index: int) -> list[Signers] | None:
        """Chunk ``index``'s signers per event, or None: recover the whole chunk in-line."""
        future = self._futures[index]
        self._futures[index] = None
        return None if future is None else self._workers.result(future)
