"""The offline verifier on protocol 2 bundles (docs/adr/0028-protocol-v2-operators-and-custody.md):
operator-signed updates and delegations replay, the basis names operator-signed events, fork choice
rule 4 holds the controllers' event, and governance by any governor the log named applies."""

from __future__ import annotations

import json

from verify_helpers import DOMAIN, T0, secret, service_key

from keyreg.core import builder
from keyreg.core.builder import sign_event
from keyreg.core.eip712 import event_digest
from keyreg.core.hashing import address_of_private_key
from keyreg.core.records import SignedEvent
from keyreg.verify import Verifier
from keyreg.verify.bundle import EvidenceEntry, GovernanceEntry, bundle_to_obj
from keyreg.verify.testing import SimulatedRegistry

NOW = T0 + 10_000
CTL, NEXT, OP = secret("v2-controller"), secret("v2-next"), secret("v2-operator")
DAY = 86_400


def _addr(s: bytes) -> bytes:
    return address_of_private_key(s)


class Log:
    """One subject's events, signed by whoever the test says."""

    def __init__(self, governor: bytes = b"\x00" * 20) -> None:
        ops = builder.operator_set([_addr(OP)], 1, ["sig"], DAY, 4)
        k0, _ = service_key("k0", label="v2-k0")
        inc = builder.inception(T0, [_addr(CTL)], 1, [_addr(NEXT)], 1, [k0], governor, operators=ops)
        self.events = [sign_event(DOMAIN, inc, [CTL])]

    @property
    def subject(self) -> bytes:
        return event_digest(DOMAIN, self.events[0].event)

    @property
    def head(self) -> bytes:
        return event_digest(DOMAIN, self.events[-1].event)

    def next_update(self, ts: int, kid: str, not_after: int, signer: bytes) -> SignedEvent:
        k, _ = service_key(kid, label=f"v2-{kid}", not_before=ts, not_after=not_after)
        ev = builder.update(self.subject, len(self.events), self.head, ts, [k])
        return sign_event(DOMAIN, ev, [signer])

    def add(self, signed: SignedEvent) -> SignedEvent:
        self.events.append(signed)
        return signed


def _open(sim: SimulatedRegistry) -> Verifier:
    bundle, block_hash = sim.export()
    return Verifier.from_bundle(json.dumps(bundle_to_obj(bundle)).encode(), block_hash, now=NOW)


def test_operator_updates_and_delegations_replay_and_the_basis_names_them() -> None:
    log = Log()
    log.add(log.next_update(T0 + 10, "op-k1", T0 + 10 + DAY, OP))
    dlg = builder.delegation(log.subject, 2, log.head, T0 + 20, builder.NO_OPERATORS)
    log.add(sign_event(DOMAIN, dlg, [CTL]))
    log.add(log.next_update(T0 + 30, "ctl-k2", 0, CTL))
    sim = SimulatedRegistry(DOMAIN, number=900, timestamp=T0 + 9_000)
    sid = sim.add_subject(log.events)
    sim.anchor_direct(sid, 0, sid)
    v = _open(sim)
    view = v.view(sid)
    assert view is not None
    assert view.authorities == ("controllers", "operators", "controllers", "controllers")
    assert not view.state.operators  # the delegation dropped the operator set
    assert v.check(sid, "op-k1", at=T0 + 100, purpose="sig").status == "valid"
    basis = v.basis(sid, "op-k1")
    assert basis is not None
    assert basis.operator_signed == (1,)
    assert basis.decisive == (1,)
    assert "operator-signed: seq 1" in basis.describe()
    assert basis.to_dict()["operatorSigned"] == [1]


def test_rule_4_holds_the_controllers_event_whichever_branch_the_exporter_lists() -> None:
    """A rogue operator's update and the controllers' update at one seq: the verifier holds the
    controllers' one (fork choice rule 4), not a dispute, even if the exporter lists the rogue one."""
    for exporter_holds in ("rogue", "controllers"):
        log = Log()
        rogue = log.next_update(T0 + 10, "rogue", T0 + 10 + DAY, OP)
        ours = log.next_update(T0 + 11, "ours", 0, CTL)
        log.add(rogue if exporter_holds == "rogue" else ours)
        sim = SimulatedRegistry(DOMAIN, number=900, timestamp=T0 + 9_000)
        sid = sim.add_subject(log.events)
        sim.anchor_direct(sid, 0, sid)
        sim.subjects[sid].evidence.append(EvidenceEntry(1, rogue, ours))
        v = _open(sim)
        view = v.view(sid)
        assert view is not None
        assert not view.disputed
        assert view.digests[1] == event_digest(DOMAIN, ours.event)
        assert v.check(sid, "rogue", at=T0 + 100).status == "unknown-key"


def test_governance_of_a_governor_named_before_a_rotation_still_applies() -> None:
    old_gov, new_gov = b"\x0a" * 20, b"\x0b" * 20
    log = Log(governor=old_gov)
    rot = builder.rotation(log.subject, 1, log.head, T0 + 10, [_addr(NEXT)], 1, None, governor=new_gov)
    log.add(sign_event(DOMAIN, rot, [NEXT]))
    sim = SimulatedRegistry(DOMAIN, number=900, timestamp=T0 + 9_000)
    sid = sim.add_subject(log.events)
    sim.anchor_direct(sid, 1, log.head, kind=2)
    sim.revoke_by_governance(sid, GovernanceEntry("k0", T0 + 5, b"\x01" * 32, 7, old_gov, 12, b"\x02" * 32, 0))
    v = _open(sim)
    verdict = v.check(sid, "k0", at=T0 + 6)
    assert verdict.status == "revoked"
    assert verdict.revoked is not None
    assert verdict.revoked.governor == old_gov
