"""Which heads a batch root anchors: the root history of the local sparse Merkle tree.

A batch anchor commits the root of the registry's whole sparse Merkle tree of subject heads
(node/core/merkle.py) and its leaf count, as the registry publishes them after each commit
(``Registry.tree_head``: read without the registry's lock, and without touching the tree).
The chain only stores the root, so a node maps a ``BatchAnchored(root)`` back to heads by
**matching the root against the roots its own tree has had**: every node that holds the same
heads computes the same root, whoever submitted it.

:class:`BatchTracker` is a registry listener. After every commit it records the new root (with a
version number) and, per subject, the heads that changed and are not yet known to be in an
anchored batch. When the watcher sees a confirmed root, :meth:`BatchTracker.match` returns, for
each subject changed up to that root's version, the head it had then; those changes are then
dropped. A root the node never had (its view differed at that moment: events still in flight,
or older than the ``max_roots`` window) matches nothing; the heads stay pending and are covered
by a later batch or a direct anchor.

Invariants (under ``_lock``):
- ``_roots`` maps each remembered root to the version it was the tree root at, oldest first,
  at most ``max_roots`` entries;
- ``_changes[subject]`` lists (version, seq, head) ascending by version, only versions newer
  than the last matched batch version.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..outcomes import Report
    from ..registry import Registry


@dataclass(frozen=True, slots=True)
class BatchLeaf:
    """A head committed by a batch root."""

    subject: bytes
    seq: int
    head: bytes


class BatchTracker:
    """Remembers recent tree roots and the heads changed under them (thread-safe)."""

    def __init__(self, registry: Registry, max_roots: int = 4096) -> None:
        self.registry = registry
        self.max_roots = max_roots
        self._lock = threading.Lock()
        self._version = 0
        self._roots: dict[bytes, int] = {}
        self._counts: dict[bytes, int] = {}
        self._changes: dict[bytes, list[tuple[int, int, bytes]]] = {}
        self._latest: tuple[bytes, int, int] | None = None  # (root, count, version)

    def attach(self) -> None:
        """Listen to the registry and seed with every head not yet anchored."""
        self.registry.listeners.append(self.on_report)
        with self._lock:
            for subject, state in list(self.registry.states.items()):
                if self.registry.anchored_position(state.head) is None:
                    self._changes.setdefault(subject, [(0, state.seq, state.head)])
            self._remember_root()

    def detach(self) -> None:
        """Stop listening."""
        if self.on_report in self.registry.listeners:
            self.registry.listeners.remove(self.on_report)

    def on_report(self, report: Report) -> None:
        """Registry listener: runs in the committing thread, after the commit, under the registry lock."""
        touched = {acc.subject for acc, _ in report.accepted}
        if not touched:
            return
        with self._lock:
            self._version += 1
            for subject in touched:
                state = self.registry.states.get(subject)
                if state is not None:
                    self._changes.setdefault(subject, []).append((self._version, state.seq, state.head))
            self._remember_root()

    def _remember_root(self) -> None:
        root, count = self.registry.tree_head
        self._roots.pop(root, None)
        self._roots[root] = self._version
        self._counts[root] = count
        while len(self._roots) > self.max_roots:
            old = next(iter(self._roots))
            del self._roots[old]
            self._counts.pop(old, None)
        self._latest = (root, count, self._version)

    def latest(self) -> tuple[bytes, int]:
        """(root, leaf count) of the tree after the last commit seen."""
        with self._lock:
            if self._latest is None:
                self._remember_root()
            assert self._latest is not None
            return self._latest[0], self._latest[1]

    def pending(self) -> int:
        """Subjects whose latest head is neither in a matched batch nor anchored directly."""
        with self._lock:
            return sum(
                1
                for changes in self._changes.values()
                if changes and self.registry.anchored_position(changes[-1][2]) is None
            )

    def knows(self, root: bytes) -> bool:
        """True if the local tree had this root recently."""
        with self._lock:
            return root in self._roots

    def match(self, root: bytes) -> list[BatchLeaf] | None:
        """The heads a confirmed batch root anchors (changed since the last matched batch), or None if unknown."""
        with self._lock:
            version = self._roots.get(root)
            if version is None:
                return None
            leaves = []
            for subject, changes in list(self._changes.items()):
                upto = [c for c in changes if c[0] <= version]
                if not upto:
                    continue
                _, seq, head = upto[-1]
                leaves.append(BatchLeaf(subject, seq, head))
                rest = [c for c in changes if c[0] > version]
                if rest:
                    self._changes[subject] = rest
                else:
                    del self._changes[subject]
            # Roots at or before this version can anchor nothing new any more.
            for r in [r for r, v in self._roots.items() if v < version]:
                del self._roots[r]
                self._counts.pop(r, None)
            return leaves
