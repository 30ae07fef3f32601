"""The offline verifier and ADR 0011 (a whole-subject revocation is final) and ADR 0012 (which anchored
head an answer rests on; events newer than the registry's direct head are unproven)."""

from __future__ import annotations

import json

import pytest
from verify_helpers import DOMAIN, T0, Actor, make_actor, service_key

from keyreg.core import builder
from keyreg.core.builder import sign_event
from keyreg.core.eip712 import event_digest
from keyreg.core.merkle import SparseMerkleTree
from keyreg.core.records import SignedEvent
from keyreg.verify import StaleView, Verifier
from keyreg.verify.bundle import EvidenceEntry, bundle_to_obj
from keyreg.verify.testing import SimulatedRegistry

NOW = T0 + 10_000


def _rotation(actor: Actor, seq: int, prev: bytes, ts: int) -> SignedEvent:
    """A recovery rotation signed by the pre-committed next controllers."""
    event = builder.rotation(actor.subject, seq, prev, ts, builder.controller_set(actor.next_controllers), 1, None)
    return sign_event(DOMAIN, event, actor.next_controllers)


def _open(sim: SimulatedRegistry) -> Verifier:
    bundle, block_hash = sim.export()
    return Verifier.from_bundle(json.dumps(bundle_to_obj(bundle)).encode(), block_hash, now=NOW)


# --------------------------------------------------------------------------------------------- ADR 0011


@pytest.mark.parametrize("exporter_holds", ["revocation", "rotation"])
def test_a_whole_subject_revocation_is_final_against_a_recovery_rotation(exporter_holds: str) -> None:
    """Evidence of a recovery rotation at the revocation's seq does not undo it, whichever branch the
    exporter lists (one that ran the old rule would list the rotation): the verifier's fork choice holds
    the revocation and the key is revoked, not valid."""
    actor = make_actor("gina", [service_key("k1", label="gina-k1")])
    _, base = actor.head
    rotation = _rotation(actor, 1, base, T0 + 20)
    revocation = actor.revoke(T0 + 10, "", T0 + 10, "destroyed")
    if exporter_holds == "rotation":
        actor.events[-1] = rotation
    sim = SimulatedRegistry(DOMAIN, number=900, timestamp=T0 + 9_000)
    sid = sim.add_subject(actor.events)
    sim.anchor_direct(sid, 0, sid)
    sim.subjects[sid].evidence.append(EvidenceEntry(1, revocation, rotation))
    v = _open(sim)
    verdict = v.check(sid, "k1", at=T0 + 100)
    assert verdict.status == "revoked", verdict.reason
    assert verdict.revoked is not None
    assert verdict.revoked.whole_subject
    view = v.view(sid)
    assert view is not None
    assert not view.disputed
    assert view.digests[1] == event_digest(DOMAIN, revocation.event)


def test_an_anchored_rotation_is_not_displaced_by_a_later_revocation_at_its_seq() -> None:
    """The chain decides first: a revocation signed at the seq of a directly anchored rotation (say with an
    old controller key leaked later) loses, so anchored history stays immutable."""
    actor = make_actor("hank", [service_key("k1", label="hank-k1")])
    _, base = actor.head
    revocation = sign_event(DOMAIN, builder.revocation(actor.subject, 1, base, T0 + 10, "", T0 + 10), actor.controllers)
    rotation = _rotation(actor, 1, base, T0 + 20)
    actor.events.append(rotation)
    sim = SimulatedRegistry(DOMAIN, number=900, timestamp=T0 + 9_000)
    sid = sim.add_subject(actor.events)
    sim.anchor_direct(sid, 1, event_digest(DOMAIN, rotation.event), kind=2)
    sim.subjects[sid].evidence.append(EvidenceEntry(1, rotation, revocation))
    v = _open(sim)
    assert v.check(sid, "k1", at=T0 + 100).status == "valid"


# --------------------------------------------------------------------------------------------- ADR 0012


def _revoked_after_direct(direct_seq: int) -> tuple[SimulatedRegistry, Actor]:
    """Subject anchored directly at ``direct_seq``; its seq-1 revocation of k1 is in a batch root."""
    actor = make_actor("ivy", [service_key("k1", label="ivy-k1"), service_key("k2", label="ivy-k2")])
    actor.revoke(T0 + 100, "k1", T0 + 50, "compromised")
    sim = SimulatedRegistry(DOMAIN, number=900, timestamp=T0 + 9_000)
    sid = sim.add_subject(actor.events)
    digest = sid if direct_seq == 0 else event_digest(DOMAIN, actor.events[direct_seq].event)
    sim.anchor_direct(sid, direct_seq, digest, kind=0 if direct_seq == 0 else 3)
    tree = SparseMerkleTree()
    tree.set(sid, *actor.head)
    sim.anchor_batch(tree, block=880)
    return sim, actor


def test_basis_names_the_direct_head_and_flags_newer_events_unproven() -> None:
    sim, actor = _revoked_after_direct(0)
    v = _open(sim)
    sid = actor.subject
    assert v.check(sid, "k1", at=T0 + 100).status == "revoked"
    basis = v.basis(sid, "k1")
    assert basis is not None
    assert basis.direct is not None
    assert (basis.direct.seq, basis.direct.digest, basis.direct.source) == (0, sid, "direct")
    assert basis.batch is not None
    assert basis.batch.seq == 1
    assert basis.unproven == (1,)
    assert basis.decisive == (1,)  # the revocation of k1 is newer than the direct head
    assert "unproven" in basis.describe()
    other = v.basis(sid, "k2")
    assert other is not None
    assert other.unproven == (1,)
    assert other.decisive == ()  # k2's verdict does not rest on the unproven event
    d = basis.to_dict()
    assert d["direct"] == {"seq": 0, "digest": "0x" + sid.hex(), "how": "direct"}
    assert d["batch"]["how"] == "batch"
    assert d["verdictUnproven"] is True


def test_basis_is_proven_when_the_direct_head_is_the_log_head() -> None:
    sim, actor = _revoked_after_direct(1)
    v = _open(sim)
    basis = v.basis(actor.subject, "k1")
    assert basis is not None
    assert basis.proven
    assert basis.decisive == ()
    assert basis.direct is not None
    assert basis.direct.seq == 1


def test_omitting_a_directly_anchored_revocation_is_a_stale_view() -> None:
    """Finding 20 on the simulated registry: the revocation is the registry's direct head, so a bundle
    without it (its event, batch entry and the proof node that became unused removed) is refused as a
    stale view instead of answering "valid"."""
    sim, actor = _revoked_after_direct(1)
    sid = actor.subject
    honest, block_hash = sim.export()
    obj = bundle_to_obj(honest)
    assert Verifier.from_bundle(json.dumps(obj).encode(), block_hash, now=NOW).check(sid, "k1", at=T0 + 100).status == (
        "revoked"
    )
    sim.subjects[sid].events.pop()
    sim.subjects[sid].batch = None
    sim.batches.clear()
    tampered, same_block = sim.export()
    assert same_block == block_hash  # the same chain state, the same pinned checkpoint
    v = Verifier.from_bundle(json.dumps(bundle_to_obj(tampered)).encode(), block_hash, now=NOW)
    with pytest.raises(StaleView):
        v.check(sid, "k1", at=T0 + 100)


def test_cli_verify_says_what_the_verdict_rests_on(tmp_path: pytest.TempPathFactory) -> None:
    from typer.testing import CliRunner

    import keyreg.cli.verify  # noqa: F401  (registers the command)
    from keyreg.cli import app

    sim, actor = _revoked_after_direct(0)
    bundle, block_hash = sim.export()
    path = tmp_path / "b.json"  # type: ignore[operator]
    path.write_text(json.dumps(bundle_to_obj(bundle)))
    args = ["verify", "0x" + actor.subject.hex(), "k1", "--bundle", str(path), "--checkpoint", "0x" + block_hash.hex()]
    args += ["--at", str(T0 + 100)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 12, result.output
    out = json.loads(result.stdout)
    assert out["basedOn"]["direct"] == {"seq": 0, "digest": "0x" + actor.subject.hex(), "how": "direct"}
    assert out["basedOn"]["unproven"] == [1]
    assert out["basedOn"]["decisive"] == [1]
    text = CliRunner().invoke(app, args).stdout
    assert "based on: registry head seq 0" in text
    assert "unproven" in text
