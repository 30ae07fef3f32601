"""A scenario of subjects on a simulated registry, exported once per session as a bundle."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest
from verify_helpers import DOMAIN, T0, Actor, make_actor, service_key

from keyreg.core.builder import sign_event
from keyreg.core.eip712 import event_digest
from keyreg.core.merkle import SparseMerkleTree
from keyreg.core.records import Update
from keyreg.verify.bundle import EvidenceEntry, GovernanceEntry, bundle_to_obj
from keyreg.verify.testing import SimulatedRegistry

GOVERNOR = bytes.fromhex("00000000000000000000000000000000000000aa")
NOW = T0 + 10_000  # the verifier's clock; the checkpoint block is at T0 + 9_000
CHECKPOINT_TIME = T0 + 9_000


@dataclass
class Scenario:
    sim: SimulatedRegistry
    actors: dict[str, Actor]
    obj: dict[str, Any]  # the bundle as a JSON object
    block_hash: bytes

    def sid(self, name: str) -> bytes:
        return self.actors[name].subject

    def data(self, obj: dict[str, Any] | None = None) -> bytes:
        return json.dumps(obj if obj is not None else self.obj).encode()

    def copy(self) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    def subject_obj(self, obj: dict[str, Any], name: str) -> dict[str, Any]:
        sid = "0x" + self.sid(name).hex()
        return next(s for s in obj["subjects"] if s["subject"] == sid)


def build_scenario() -> Scenario:
    sim = SimulatedRegistry(DOMAIN, number=900, timestamp=CHECKPOINT_TIME)
    actors: dict[str, Actor] = {}

    # alice: three algorithms, then a zero-downtime rotation of k1 -> k4 with an overlap window
    alice = make_actor(
        "alice",
        [
            service_key("k1"),
            service_key("k2", alg="P-256"),
            service_key("k3", alg="secp256k1", purposes=("sig", "enc")),
        ],
    )
    alice.update(T0 + 100, [service_key("k4", not_before=T0 + 1800)], retire=[("k1", T0 + 3600)])
    actors["alice"] = alice

    # bob: controller revocation of k1 from T0 + 500
    bob = make_actor("bob", [service_key("k1", label="bob-k1"), service_key("k2", label="bob-k2")])
    bob.revoke(T0 + 400, "k1", T0 + 500)
    actors["bob"] = bob

    # carol: named a governor that revoked k1 from T0 + 700
    carol = make_actor(
        "carol", [service_key("k1", label="carol-k1"), service_key("k2", label="carol-k2")], governor=GOVERNOR
    )
    actors["carol"] = carol

    # dave: two validly signed, conflicting updates at seq 1, neither anchored: disputed
    dave = make_actor("dave", [service_key("k1", label="dave-k1")])
    fork_a = dave.unsigned_update(T0 + 50, [service_key("k2", label="dave-k2")])
    fork_b = dave.unsigned_update(T0 + 60, [service_key("k3", label="dave-k3")])
    dave.events.append(fork_a)
    actors["dave"] = dave

    # erin: anchored directly at seq 2, but the bundle's log stops at seq 1 (hidden head)
    erin = make_actor("erin", [service_key("k1", label="erin-k1")])
    erin.update(T0 + 100, [service_key("k2", label="erin-k2")])
    hidden = erin.unsigned_update(T0 + 200, [service_key("k3", label="erin-k3")])
    actors["erin"] = erin

    # frank: the registry anchors a different seq-1 event than the log holds (conflict)
    frank = make_actor("frank", [service_key("k1", label="frank-k1")])
    other = frank.unsigned_update(T0 + 70, [service_key("k9", label="frank-k9")])
    frank.update(T0 + 80, [service_key("k2", label="frank-k2")])
    actors["frank"] = frank

    for a in actors.values():
        sim.add_subject(a.events)
    sim.anchor_direct(alice.subject, *alice.head)
    sim.anchor_direct(bob.subject, *bob.head)
    sim.anchor_direct(carol.subject, *carol.head)
    sim.anchor_direct(erin.subject, hidden.event.seq, event_digest(DOMAIN, hidden.event))
    sim.anchor_direct(frank.subject, 1, event_digest(DOMAIN, other.event))
    sim.subjects[dave.subject].evidence.append(EvidenceEntry(1, fork_a, fork_b))
    sim.revoke_by_governance(
        carol.subject, GovernanceEntry("k1", T0 + 700, b"\x07" * 32, 42, GOVERNOR, 850, b"\x08" * 32, 3)
    )
    tree = SparseMerkleTree()
    for name in ("alice", "bob", "carol"):
        tree.set(actors[name].subject, *actors[name].head)
    sim.anchor_batch(tree, block=880)
    assert isinstance(fork_a.event, Update)
    bundle, block_hash = sim.export()
    return Scenario(sim, actors, bundle_to_obj(bundle), block_hash)


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return build_scenario()


__all__ = ["NOW", "Scenario", "sign_event"]
