"""Signature recovery for large ingest batches, on worker threads (used by ``node.registry``).

libsecp256k1 through cffi releases the GIL, so recovery overlaps with the ingesting thread's
decoding and rules on a second core.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from .core.errors import RuleViolation
from .core.log import recover_signers
from .core.records import SignedEvent

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
