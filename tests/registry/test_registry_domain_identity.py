"""Registry.ingest whichever Domain objects the events carry.

The registry's own Domain object, an equal copy, another network's: the outcomes, stored bytes,
audit chain and read model must be those of the plain comparisons.
"""

from __future__ import annotations

import dataclasses

from keyreg.core.codec import CanonicalEvent, decode_event, encode_event
from keyreg.core.records import Domain, SignedEvent
from keyreg.outcomes import IngestResult
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore
from tests.store.streams import DOMAIN, interleaved, mixed_items

OTHER = Domain(DOMAIN.chain_id + 1, DOMAIN.verifying_contract)


def _outcome(reg: Registry, store: MemoryStore, results: list[IngestResult]) -> tuple[object, ...]:
    subjects = sorted(reg.states)
    return (
        [r.to_dict() for r in results],
        reg.states,
        reg.tree.root,
        [store.events(s) for s in subjects],
        store.audit_records(0, 10**6),
        reg.counters,
    )


def _ingest(domain: Domain, items: list[object], batch: int) -> tuple[object, ...]:
    store = MemoryStore(clock=lambda: 7.0)
    reg = Registry(domain, store, clock=lambda: 2_000_000_000.0)
    results = []
    for i in range(0, len(items), batch):
        results += reg.ingest(items[i : i + batch], "sync", False)  # type: ignore[arg-type]
    return _outcome(reg, store, results)


def _with_domain(item: bytes, domain: Domain) -> object:
    try:
        signed = decode_event(item)
    except Exception:
        return item
    return dataclasses.replace(signed, domain=domain)


def test_equal_domain_objects_give_the_same_outcomes() -> None:
    raws = mixed_items(11, 5, 7)
    reference = _ingest(DOMAIN, raws, 64)
    copy = Domain(DOMAIN.chain_id, DOMAIN.verifying_contract)  # equal, not identical
    assert copy is not DOMAIN
    for batch in (1, 64, 1000):  # one by one, serial batches, one parallel batch
        assert _ingest(copy, raws, batch) == reference
        # Decoded items carrying yet other equal Domain objects, one per event.
        items = [_with_domain(r, Domain(DOMAIN.chain_id, DOMAIN.verifying_contract)) for r in raws]
        assert _ingest(DOMAIN, items, batch) == reference


def test_other_networks_events_are_rejected_between_ours() -> None:
    events = interleaved(3, 4, 4)
    stream = [e.signed for e in events]
    items: list[object] = []
    for i, s in enumerate(stream):
        items.append(CanonicalEvent(s, encode_event(s)))
        if i % 3 == 0:
            items.append(dataclasses.replace(s, domain=OTHER))  # a foreign twin, inception or not
    store = MemoryStore(clock=lambda: 7.0)
    reg = Registry(DOMAIN, store)
    results = reg.ingest(items, "gossip", False)  # type: ignore[arg-type]
    foreign = [r for r, it in zip(results, items, strict=True) if isinstance(it, SignedEvent)]
    assert {r.status for r in foreign} == {"rejected"}
    assert {r.error.code for r in foreign if r.error} == {"wrong_network"}
    assert [r.status for r, it in zip(results, items, strict=True) if isinstance(it, CanonicalEvent)] == [
        "accepted"
    ] * len(stream)
    assert reg.validator.domain is DOMAIN
    for subject in {e.subject for e in events}:
        assert store.events(subject) == [encode_event(e.signed) for e in events if e.subject == subject]
