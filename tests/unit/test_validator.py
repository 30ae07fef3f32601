"""Validator.validate gives, event for event, what decode_event + apply_event give one at a time.

The reference below is the plain loop a node would write: decode, look the subject up (an
inception's subject is its digest), apply, keep the new state. The pipeline must agree on every
result (the same digest, or the same error class and message) and on the states it leaves, for
valid logs, every invalid vector, and hypothesis-mutated batches (dropped, repeated, reordered,
byte-edited events, other networks).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.codec import decode_event, dumps_canonical
from keyreg.core.eip712 import event_digest
from keyreg.core.errors import RuleViolation
from keyreg.core.log import Accepted, SubjectState, apply_event
from keyreg.core.records import Domain, Inception
from keyreg.core.validator import Validator
from tests.vectors.generate import domain_from_obj

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
LOGS = json.loads((VECTORS / "valid_logs.json").read_text())["logs"]
INVALID = json.loads((VECTORS / "invalid.json").read_text())["cases"]
DOMAIN = domain_from_obj(LOGS[0]["domain"])
OTHER = Domain(DOMAIN.chain_id + 1, DOMAIN.verifying_contract)
# Every valid log's events, as wire bytes, log by log (one log is on another network).
WIRE = [dumps_canonical(e) for log in LOGS for e in log["events"]]
HOME = [dumps_canonical(e) for log in LOGS if log["domain"] == LOGS[0]["domain"] for e in log["events"]]


def sequential(
    wire: Sequence[bytes], states: Mapping[bytes, SubjectState], domain: Domain, now: int | None
) -> tuple[list[tuple[str, str]], dict[bytes, SubjectState]]:
    work = dict(states)
    out: list[tuple[str, str]] = []
    for data in wire:
        try:
            signed = decode_event(data)
            event = signed.event
            if isinstance(event, Inception):
                try:
                    subject = event_digest(domain, event)
                except Exception:
                    subject = b""
            else:
                subject = event.subject
            acc = apply_event(work.get(subject), signed, domain, now=now)
        except RuleViolation as exc:
            out.append((type(exc).__name__, str(exc)))
            continue
        work[acc.subject] = acc.state
        out.append(("ok", acc.digest.hex()))
    return out, work


def batched(
    wire: Sequence[bytes], states: Mapping[bytes, SubjectState], domain: Domain, now: int | None
) -> tuple[list[tuple[str, str]], dict[bytes, SubjectState]]:
    results, changed = Validator(domain).validate(wire, states, now)
    assert len(results) == len(wire)
    out = [("ok", r.digest.hex()) if isinstance(r, Accepted) else (type(r).__name__, str(r)) for r in results]
    return out, {**states, **changed}


def test_valid_logs_in_one_batch() -> None:
    got, states = batched(HOME, {}, DOMAIN, None)
    assert len(HOME) > 10
    assert all(kind == "ok" for kind, _ in got)
    assert (got, states) == sequential(HOME, {}, DOMAIN, None)
    assert {"0x" + s.hex() for s in states} == {log["subject"] for log in LOGS if log["domain"] == LOGS[0]["domain"]}


def test_states_are_read_not_written() -> None:
    _, states = batched(WIRE[:1], {}, DOMAIN, None)
    before = dict(states)
    results, _ = Validator(DOMAIN).validate(HOME, states)
    assert states == before
    assert isinstance(results[0], RuleViolation)  # the inception is already known: stale


def test_every_invalid_vector_after_its_prior_events() -> None:
    for case in INVALID:
        domain = domain_from_obj(case["domain"])
        data = case["eventRaw"].encode() if "eventRaw" in case else dumps_canonical(case["event"])
        wire = [dumps_canonical(o) for o in case["prior"]] + [data]
        got = batched(wire, {}, domain, case["now"])
        assert got == sequential(wire, {}, domain, case["now"]), case["name"]
        assert got[0][-1][0] != "ok", case["name"]


def _mutate(data: bytes, position: int, byte: int) -> bytes:
    i = position % len(data)
    return data[:i] + bytes((byte,)) + data[i + 1 :]


@settings(max_examples=150, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(WIRE) - 1), min_size=1, max_size=40),
    edits=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    split=st.integers(0, 40),
    other_network=st.booleans(),
)
def test_mutated_batches_agree(
    picks: list[int], edits: list[tuple[int, int, int]], split: int, other_network: bool
) -> None:
    wire = [WIRE[i] for i in picks]
    for index, position, byte in edits:
        if index < len(wire):
            wire[index] = _mutate(wire[index], position, byte)
    domain = OTHER if other_network else DOMAIN
    # States from a first batch, then the rest: both paths start from the same known states.
    head, tail = wire[:split], wire[split:]
    want_head, states = sequential(head, {}, domain, None)
    got_head, got_states = batched(head, {}, domain, None)
    assert (got_head, got_states) == (want_head, states)
    assert batched(tail, states, domain, None) == sequential(tail, states, domain, None)


def test_results_are_exceptions_or_accepted() -> None:
    bad: list[Any] = [b"{", b"", WIRE[0]]
    results, changed = Validator(DOMAIN).validate(bad, {})
    assert [type(r).__name__ for r in results[:2]] == ["MalformedEvent", "MalformedEvent"]
    assert isinstance(results[2], Accepted)
    assert list(changed) == [results[2].subject]


def test_decoded_events_of_this_network_share_its_domain() -> None:
    validator = Validator(DOMAIN)
    assert validator.decode(HOME[0]).domain is DOMAIN
    equal = Domain(DOMAIN.chain_id, DOMAIN.verifying_contract)
    signed = Validator(equal).decode(HOME[0])
    assert signed.domain is equal
    assert validator.is_ours(signed)
    assert not Validator(OTHER).is_ours(signed)


def test_digest_is_event_digest_for_every_event() -> None:
    validator = Validator(DOMAIN)
    for data in HOME:
        event = decode_event(data).event
        assert validator.digest(event) == event_digest(DOMAIN, event)


def test_apply_replays_like_apply_event() -> None:
    validator = Validator(DOMAIN)
    state = None
    for data in HOME[:5]:
        signed = decode_event(data)
        subject = validator.subject(signed, validator.digest(signed.event))
        if state is not None and state.subject != subject:
            state = None
        acc = validator.apply(state, signed)
        assert acc == apply_event(state, signed, DOMAIN)
        state = acc.state
