"""Rejected events leave no cyclic garbage: the cyclic GC's passes pause the event loop that
serves verdicts (bench/adversarial.py junk phase), so ingest must free what it allocates by
reference counting alone, whatever an attacker sends."""

from __future__ import annotations

import gc
import json
import random
from collections.abc import Iterator

import pytest

from keyreg.core import builder as b
from keyreg.core.codec import encode_event
from keyreg.core.hashing import keccak
from keyreg.core.records import Domain, PublishedKey
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
NOW = 1_700_000_000
CURRENT = keccak(b"current-controller")
NEXT = keccak(b"next-controller")


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _junk(seq1: dict[str, object], variant: str, rnd: random.Random, i: int) -> bytes:
    ev = dict(seq1, metadata=f"junk {i}", setMetadata=True)
    sig = rnd.randbytes(32) + rnd.randrange(1, 2**255).to_bytes(32, "big") + bytes([27 + i % 2])
    if variant == "unsigned":
        ev["signatures"] = []
    elif variant == "badly_signed":
        ev["signatures"] = ["0x" + sig.hex()]
    elif variant == "wrong_prev":
        ev["prev"] = "0x" + rnd.randbytes(32).hex()
        ev["signatures"] = ["0x" + sig.hex()]
    else:  # not an event at all
        return b'{"kind":"update","seq":[' + str(i).encode() + b"]}"
    return json.dumps(ev, separators=(",", ":"), sort_keys=True).encode()


@pytest.mark.parametrize("variant", ["unsigned", "badly_signed", "wrong_prev", "garbage"])
def test_rejected_junk_leaves_no_cyclic_garbage(variant: str, no_gc: None) -> None:
    registry = Registry(DOMAIN, MemoryStore(), clock=lambda: NOW)
    key = PublishedKey("k0", "Ed25519", keccak(b"k0"), ("sig",), NOW - 1000, 0)
    inception = b.inception(NOW - 1000, b.controller_set([CURRENT]), 1, b.controller_set([NEXT]), 1, keys=[key])
    inc = b.sign_event(DOMAIN, inception, [CURRENT])
    subject = registry.ingest([encode_event(inc)])[0].subject
    assert subject is not None
    k1 = PublishedKey("k1", "Ed25519", keccak(b"k1"), ("sig",), NOW - 1000, 0)
    up = b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 900, publish=[k1]), [CURRENT])
    assert registry.ingest([encode_event(up)])[0].status == "accepted"
    seq1 = json.loads(registry.events(subject, 1, 1)[0])
    rnd = random.Random(7)
    gc.collect()
    results = registry.ingest([_junk(seq1, variant, rnd, i) for i in range(40)], "api")
    assert all(r.status == "rejected" and r.error is not None for r in results)
    del results
    # Nothing left for the cyclic collector: before the fix each badly signed event left ~28 objects
    # (frames, tracebacks, cells) in a cycle through its result's error.
    assert gc.collect() == 0
