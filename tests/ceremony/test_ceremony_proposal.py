"""The proposal rules (node/ceremony/proposal.py): who may sign, duplicates, high-s, stale heads, thresholds.

Real signatures over real EIP-712 digests; a complete proposal must yield an event the core accepts.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from ceremony_support import DOMAIN, ED_KEY, NOW, Subject, high_s, make_subject, secret
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyreg.ceremony import (
    DuplicateSignature,
    IncompleteProposal,
    Proposal,
    ProposalComplete,
    ProposalError,
    StaleProposal,
    propose,
)
from keyreg.ceremony.proposal import parse_signature
from keyreg.core import builder
from keyreg.core.errors import (
    BadSignature,
    ChainBroken,
    CommitmentMismatch,
    InvalidTransition,
    MalformedEvent,
    OperatorLimit,
    UnauthorizedSigner,
)
from keyreg.core.hashing import address_of_private_key, sign_digest
from keyreg.core.log import apply_event
from keyreg.core.records import PublishedKey


def _revocation(s: Subject, key_id: str = "k1", ts: int = NOW + 10) -> Proposal:
    ev = builder.revocation(s.state.subject, s.state.seq + 1, s.state.head, ts, key_id, NOW + 5, "lost")
    return propose(s.state, ev, DOMAIN)


def _rotation(s: Subject, ts: int = NOW + 10) -> Proposal:
    ev = builder.rotation(s.state.subject, s.state.seq + 1, s.state.head, ts, s.next_addresses, 2, s.addresses, 2)
    return propose(s.state, ev, DOMAIN)


def test_a_revocation_collects_two_of_three_and_the_core_accepts_it() -> None:
    s = make_subject()
    p = _revocation(s)
    assert p.authority.name == "controllers"
    assert p.authority.signers == s.addresses
    assert p.authority.threshold == 2
    assert not p.complete
    assert p.missing == 2
    with pytest.raises(IncompleteProposal):
        p.signed_event()
    # signed out of order: kept ascending by signer, as the protocol requires
    p = p.attach(sign_digest(s.current[2], p.digest))
    p = p.attach(sign_digest(s.current[0], p.digest))
    assert p.complete
    assert p.missing == 0
    assert p.signers == (address_of_private_key(s.current[0]), address_of_private_key(s.current[2]))
    acc = apply_event(s.state, p.signed_event(), DOMAIN)
    assert acc.state.keys["k1"].revoked_at == NOW + 5
    with pytest.raises(ProposalComplete):
        p.attach(sign_digest(s.current[1], p.digest))


def test_wrong_signer_duplicate_and_high_s_are_refused() -> None:
    s = make_subject()
    p = _revocation(s)
    with pytest.raises(UnauthorizedSigner, match="not one of the controllers"):
        p.attach(sign_digest(s.outsiders[0], p.digest))
    with pytest.raises(UnauthorizedSigner):  # the next set may not sign a revocation
        p.attach(sign_digest(s.following[0], p.digest))
    good = sign_digest(s.current[1], p.digest)
    with pytest.raises(BadSignature, match=r"low-s|EIP-2"):
        p.attach(high_s(good))
    p = p.attach(good)
    with pytest.raises(DuplicateSignature):
        p.attach(good)
    with pytest.raises(BadSignature):
        p.attach(good[:64])
    with pytest.raises(BadSignature):
        p.attach(good[:64] + b"\x01")
    # a signature over another digest recovers to someone else: not a controller
    other = sign_digest(s.current[0], bytes(32))
    with pytest.raises(UnauthorizedSigner):
        p.attach(other)
    assert len(p.signatures) == 1


def test_a_rotation_collects_from_the_revealed_set_only() -> None:
    s = make_subject()
    p = _rotation(s)
    assert p.authority.signers == s.next_addresses
    with pytest.raises(UnauthorizedSigner):
        p.attach(sign_digest(s.current[0], p.digest))  # the keys in force cannot rotate
    p = p.attach(sign_digest(s.following[1], p.digest)).attach(sign_digest(s.following[0], p.digest))
    acc = apply_event(s.state, p.signed_event(), DOMAIN)
    assert acc.state.controllers == s.next_addresses


def test_a_rotation_that_does_not_reveal_the_commitment_is_refused_before_anyone_signs() -> None:
    s = make_subject()
    ev = builder.rotation(s.state.subject, 1, s.state.head, NOW + 1, s.addresses, 2, None)
    with pytest.raises(CommitmentMismatch):
        propose(s.state, ev, DOMAIN)
    ev = builder.rotation(s.state.subject, 1, s.state.head, NOW + 1, s.next_addresses, 1, None)  # other threshold
    with pytest.raises(CommitmentMismatch):
        propose(s.state, ev, DOMAIN)


def test_a_proposal_breaking_a_rule_is_refused_before_anyone_signs() -> None:
    s = make_subject()
    with pytest.raises(InvalidTransition):  # unknown key
        _revocation(s, key_id="nope")
    with pytest.raises(ProposalError):  # operators sign updates only
        propose(s.state, _revocation(s).event, DOMAIN, authority="operators")
    with pytest.raises(ProposalError):
        propose(s.state, _revocation(s).event, DOMAIN, authority="root")
    ev = builder.revocation(s.state.subject, 1, s.state.head, NOW - 1, "k1", NOW, "")  # before the head
    with pytest.raises(Exception, match="before the previous"):
        propose(s.state, ev, DOMAIN)


def test_a_proposal_for_a_head_that_moved_on_is_stale() -> None:
    s = make_subject()
    p = _revocation(s)
    p = p.attach(sign_digest(s.current[0], p.digest))
    # meanwhile another event is accepted at the same seq
    up = builder.update(s.state.subject, 1, s.state.head, NOW + 1, metadata="moved")
    s.apply(builder.sign_event(DOMAIN, up, s.current[:2]))
    with pytest.raises(StaleProposal, match="new proposal"):
        p.check_current(s.state)
    with pytest.raises(StaleProposal):
        propose(s.state, p.event, DOMAIN)
    # a proposal for a head beyond this view is a gap, not stale
    ahead = builder.revocation(s.state.subject, 5, s.state.head, NOW + 2, "k1", NOW, "")
    with pytest.raises(ChainBroken, match="behind"):
        propose(s.state, ahead, DOMAIN)


def test_the_json_form_round_trips_and_rechecks_every_signature() -> None:
    s = make_subject()
    p = _revocation(s)
    p = p.attach(sign_digest(s.current[1], p.digest))
    obj = json.loads(json.dumps(p.to_obj()))
    assert obj["id"] == "0x" + p.digest.hex()
    assert obj["missing"] == 1
    assert obj["event"]["signatures"] == []
    back = Proposal.from_obj(obj)
    assert back == p
    # a tampered event makes the collected signature recover to someone else
    tampered = json.loads(json.dumps(obj))
    tampered["event"]["reason"] = "other"
    del tampered["id"]
    with pytest.raises(UnauthorizedSigner):
        Proposal.from_obj(tampered)
    # derived fields must match; unknown fields are refused
    for field, value in (("id", "0x" + "00" * 32), ("complete", True), ("signers", [])):
        with pytest.raises(MalformedEvent, match=field):
            Proposal.from_obj({**obj, field: value})
    with pytest.raises(MalformedEvent, match="unknown field"):
        Proposal.from_obj({**obj, "extra": 1})
    with pytest.raises(MalformedEvent):  # signatures go under "signatures", never in the event
        Proposal.from_obj({**obj, "event": {**obj["event"], "signatures": obj["signatures"]}})
    with pytest.raises(DuplicateSignature):
        Proposal.from_obj({**obj, "signatures": obj["signatures"] * 2, "signers": obj["signers"] * 2})
    with pytest.raises(MalformedEvent):
        Proposal.from_obj({**obj, "authority": {**obj["authority"], "threshold": 4}})


def test_parse_signature_takes_any_case_and_refuses_junk() -> None:
    s = make_subject()
    sig = sign_digest(s.current[0], bytes(32))
    assert parse_signature("0x" + sig.hex().upper()) == sig
    for bad in ("", "0x", "0x12", sig.hex(), "0x" + "zz" * 65, "0x" + high_s(sig).hex()):
        with pytest.raises(BadSignature):
            parse_signature(bad)


# Property: whatever arrives (controllers, outsiders, the next set, high-s copies, repeats, in any
# order), the proposal holds exactly the first `threshold` distinct controllers to sign, ascending,
# refuses everything else with the rule it breaks, and once complete yields an accepted event.
_SUBJECT = make_subject("prop")
_PROPOSAL = _revocation(_SUBJECT)
_POOL = [
    *(("controller", i) for i in range(3)),
    *(("outsider", i) for i in range(3)),
    *(("next", i) for i in range(3)),
    *(("high_s", i) for i in range(3)),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_POOL), max_size=10))
def test_attach_property(arrivals: list[tuple[str, int]]) -> None:
    s, p = _SUBJECT, _PROPOSAL
    expected: list[bytes] = []
    for who, i in arrivals:
        keys = {"controller": s.current, "outsider": s.outsiders, "next": s.following, "high_s": s.current}
        sig = sign_digest(keys[who][i], p.digest)
        if who == "high_s":
            sig = high_s(sig)
        signer = address_of_private_key(s.current[i])
        try:
            p = p.attach(sig)
        except ProposalComplete:
            assert len(expected) == 2
        except DuplicateSignature:
            assert who == "controller"
            assert signer in expected
        except UnauthorizedSigner:
            assert who in ("outsider", "next")
        except BadSignature:
            assert who == "high_s"
        else:
            assert who == "controller"
            assert signer not in expected
            assert len(expected) < 2
            expected.append(signer)
    assert p.signers == tuple(sorted(expected))
    assert p.complete == (len(expected) == 2)
    if p.complete:
        assert apply_event(s.state, p.signed_event(), DOMAIN).state.seq == 1
    else:
        with pytest.raises(IncompleteProposal):
            p.signed_event()
    assert Proposal.from_obj(p.to_obj()) == p


def test_an_update_collects_for_the_set_it_names_controllers_or_operators() -> None:
    s = make_subject("ops", operators=2)
    ops = [secret("ops-o0"), secret("ops-o1")]
    key = PublishedKey("k2", "Ed25519", ED_KEY, ("sig",), 0, NOW + 3600)
    ev = builder.update(s.state.subject, 1, s.state.head, NOW + 1, publish=[key])
    by_ops = propose(s.state, ev, DOMAIN, authority="operators")
    assert by_ops.authority.name == "operators"
    assert by_ops.authority.threshold == 1
    with pytest.raises(UnauthorizedSigner):  # a controller is not an operator
        by_ops.attach(sign_digest(s.current[0], by_ops.digest))
    done = by_ops.attach(sign_digest(ops[1], by_ops.digest))
    acc = apply_event(s.state, done.signed_event(), DOMAIN)
    assert acc.authority == "operators"
    by_controllers = propose(s.state, ev, DOMAIN)  # the same event, collected from the controllers
    with pytest.raises(UnauthorizedSigner):
        by_controllers.attach(sign_digest(ops[0], by_controllers.digest))
    # what the operators may not do is refused before anyone signs
    forever = builder.update(s.state.subject, 1, s.state.head, NOW + 1, publish=[replace(key, not_after=0)])
    with pytest.raises(OperatorLimit):
        propose(s.state, forever, DOMAIN, authority="operators")
    assert propose(s.state, forever, DOMAIN).authority.name == "controllers"  # the controllers may
    meta = builder.update(s.state.subject, 1, s.state.head, NOW + 1, metadata="x")
    with pytest.raises(OperatorLimit):
        propose(s.state, meta, DOMAIN, authority="operators")
    no_ops = make_subject("noops")
    with pytest.raises(ProposalError, match="no operator set"):
        propose(no_ops.state, builder.update(no_ops.state.subject, 1, no_ops.state.head, NOW, metadata="m"),
                DOMAIN, authority="operators")  # fmt: skip


def test_a_delegation_collects_from_the_controllers_in_force() -> None:
    s = make_subject("deleg", operators=1)
    new_ops = builder.operator_set([address_of_private_key(secret("deleg-new"))], 1, ["sig", "enc"], 3600, 8)
    p = propose(s.state, builder.delegation(s.state.subject, 1, s.state.head, NOW + 1, new_ops), DOMAIN)
    assert p.authority.signers == s.addresses
    with pytest.raises(UnauthorizedSigner):  # operators cannot change their own set
        p.attach(sign_digest(secret("deleg-o0"), p.digest))
    p = p.attach(sign_digest(s.current[0], p.digest)).attach(sign_digest(s.current[1], p.digest))
    assert apply_event(s.state, p.signed_event(), DOMAIN).state.operators == new_ops
    with pytest.raises(ProposalError):
        propose(s.state, p.event, DOMAIN, authority="operators")
