"""Registry.read_tree (subtree reads under the registry's lock, blocking or not) and tree_head
(the root and count published at each commit, read without the lock)."""

from __future__ import annotations

import threading

from keyreg.core.codec import encode_event
from keyreg.core.merkle import SparseMerkleTree
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore
from tests.store.streams import DOMAIN, interleaved

STREAM = interleaved(7, 3, 6)


def _root(tree: SparseMerkleTree) -> tuple[bytes, int]:
    return tree.node_hash(0, 0), tree.count(0, 0)


def test_read_tree_sees_every_ingested_head() -> None:
    registry = Registry(DOMAIN, MemoryStore())
    empty = registry.read_tree(_root)
    registry.ingest([encode_event(e.signed) for e in STREAM])
    root, count = registry.read_tree(_root)
    assert count == len({e.subject for e in STREAM})
    assert root != empty[0]
    assert registry.read_tree(_root, blocking=False) == (root, count)  # nobody else holds the lock
    reference = SparseMerkleTree()
    for subject, state in registry.states.items():
        reference.set(subject, state.seq, state.head)
    assert root == reference.node_hash(0, 0)


def test_a_non_blocking_read_gives_way_to_a_writer_holding_the_lock() -> None:
    registry = Registry(DOMAIN, MemoryStore())
    inside, leave = threading.Event(), threading.Event()

    def hold(tree: SparseMerkleTree) -> None:
        inside.set()
        assert leave.wait(30)

    holder = threading.Thread(target=registry.read_tree, args=(hold,))
    holder.start()
    try:
        assert inside.wait(30)
        assert registry.read_tree(_root, blocking=False) is None
    finally:
        leave.set()
        holder.join(30)
    assert not holder.is_alive()
    assert registry.read_tree(_root, blocking=False) is not None


def test_tree_head_is_published_at_each_commit_and_read_without_the_lock() -> None:
    registry = Registry(DOMAIN, MemoryStore())
    assert registry.tree_head == (SparseMerkleTree().root, 0)
    seen = []
    registry.listeners.append(lambda report: seen.append(registry.tree_head))
    for e in STREAM:
        registry.ingest([encode_event(e.signed)])
    reference = SparseMerkleTree()
    for subject, state in registry.states.items():
        reference.set(subject, state.seq, state.head)
    assert registry.tree_head == (reference.root, len(reference)) == registry.read_tree(_root)
    assert len(seen) == len(STREAM)  # listeners (the batch tracker) see the head of their commit
    assert len(set(seen)) == len(STREAM)
    # Readers need no lock: the head is there while a writer holds it.
    with registry._lock:
        assert registry.tree_head == (reference.root, len(reference))
    # A registry loaded from the store publishes the same head.
    again = Registry(DOMAIN, registry.store)
    assert again.tree_head == registry.tree_head


def test_reading_the_tree_head_does_not_touch_the_tree() -> None:
    registry = Registry(DOMAIN, MemoryStore())
    registry.ingest([encode_event(e.signed) for e in STREAM])
    cached = registry.tree.cached_nodes
    for _ in range(3):
        assert registry.tree_head.count == len(registry.states)
    assert registry.tree.cached_nodes == cached
