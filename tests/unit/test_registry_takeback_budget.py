"""Operators flooding a subject's conflict budget cannot lock its controllers out: the controllers'
take-back of a seq (fork choice rule 4) is charged to the separate recovery budget."""

from __future__ import annotations

from test_registry_operators import CTL, DOMAIN, NOW, OP_A, incept, op_update

from keyreg.core import builder as b
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore


def test_controllers_take_a_seq_back_after_operators_spent_the_conflict_budget() -> None:
    registry = Registry(DOMAIN, MemoryStore(), clock=lambda: NOW)
    per_subject = registry.conflicts.per_subject
    subject = registry.ingest([incept()])[0].subject
    assert subject is not None
    rogue = registry.ingest([op_update(subject, 1, subject, NOW - 900, "rogue", OP_A)])[0]
    assert rogue.status == "accepted"
    # the stolen operator key signs competitor after competitor at seq 1 until the budget is spent
    flood = [op_update(subject, 1, subject, NOW - 900, f"flood-{i}", OP_A) for i in range(per_subject + 4)]
    results = [registry.ingest([ev])[0] for ev in flood]
    throttled = [r for r in results if r.status == "rejected"]
    assert throttled, "the conflict budget never ran out"
    assert all(r.error is not None and r.error.code == "throttled" for r in throttled)
    assert subject in registry.disputed  # operator against operator: disputed until someone settles it
    # the controllers still get their event in, and it settles the seq (rule 4)
    ours = b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 850, retire=[("k0", NOW)]), [CTL])
    result = registry.ingest([ours])[0]
    assert (result.status, result.switched) == ("duplicity", True), result
    assert subject not in registry.disputed
    state = registry.state(subject)
    assert state is not None
    assert (state.seq, state.head_authority) == (1, "controllers")
