"""The offline verifier on a simulated registry: verdicts, omission, disputes, freshness."""

from __future__ import annotations

import pytest
from conftest import CHECKPOINT_TIME, NOW, Scenario
from verify_helpers import DOMAIN, T0

from keyreg.core.records import Domain
from keyreg.verify import BundleStale, DomainMismatch, LogInvalid, StaleView, Verifier, encode_bundle
from keyreg.verify.bundle import decode_bundle


@pytest.fixture(scope="module")
def verifier(scenario: Scenario) -> Verifier:
    return Verifier.from_bundle(scenario.data(), scenario.block_hash, max_staleness=3600, now=NOW)


def test_valid_keys_of_all_algorithms(scenario: Scenario, verifier: Verifier) -> None:
    sid = scenario.sid("alice")
    for kid in ("k1", "k2", "k3"):
        v = verifier.check(sid, kid, at=T0 + 1000, purpose="sig")
        assert v.status == "valid", v.reason
    assert verifier.check(sid, "k2", at=T0 + 1000, purpose="enc").status == "wrong-purpose"
    assert verifier.check(sid, "k3", at=T0 + 1000, purpose="enc").status == "valid"
    assert verifier.check(sid, "nope", at=T0 + 1000).status == "unknown-key"
    assert verifier.check(b"\x01" * 32, "k1", at=T0).status == "unknown-subject"


def test_overlap_window(scenario: Scenario, verifier: Verifier) -> None:
    sid = scenario.sid("alice")
    # before the new key's not-before: only the old key
    assert verifier.check(sid, "k1", at=T0 + 1000).status == "valid"
    assert verifier.check(sid, "k4", at=T0 + 1000).status == "not-yet-valid"
    # the overlap window: both
    assert verifier.check(sid, "k1", at=T0 + 2000).status == "valid"
    assert verifier.check(sid, "k4", at=T0 + 2000).status == "valid"
    # after the old key's retirement: only the new one
    assert verifier.check(sid, "k1", at=T0 + 3600).status == "expired"
    assert verifier.check(sid, "k4", at=T0 + 3600).status == "valid"
    kids = {k["kid"] for k in verifier.jwks(sid, at=T0 + 2000)["keys"]}
    assert {"k1", "k4"} <= kids


def test_controller_revocation(scenario: Scenario, verifier: Verifier) -> None:
    sid = scenario.sid("bob")
    assert verifier.check(sid, "k1", at=T0 + 499).status == "valid"
    v = verifier.check(sid, "k1", at=T0 + 500)
    assert v.status == "revoked"
    assert v.revoked is not None
    assert v.revoked.by == "controller"
    assert v.revoked.since == T0 + 500
    assert verifier.check(sid, "k2", at=T0 + 500).status == "valid"


def test_governance_revocation(scenario: Scenario, verifier: Verifier) -> None:
    sid = scenario.sid("carol")
    assert verifier.check(sid, "k1", at=T0 + 699).status == "valid"
    v = verifier.check(sid, "k1", at=T0 + 700)
    assert v.status == "revoked"
    assert v.revoked is not None
    assert v.revoked.by == "governance"
    assert v.revoked.proposal_id == 42
    assert verifier.check(sid, "k2", at=T0 + 700).status == "valid"


def test_disputed_subject_fails_closed(scenario: Scenario, verifier: Verifier) -> None:
    v = verifier.check(scenario.sid("dave"), "k1", at=T0 + 100)
    assert v.status == "disputed"
    assert verifier.jwks(scenario.sid("dave"), at=T0 + 100) == {"keys": []}


def test_anchor_conflict_is_disputed(scenario: Scenario, verifier: Verifier) -> None:
    v = verifier.check(scenario.sid("frank"), "k1", at=T0 + 100)
    assert v.status == "disputed"
    assert "anchor" in v.reason


def test_hidden_head_is_detected(scenario: Scenario, verifier: Verifier) -> None:
    sid = scenario.sid("erin")
    view = verifier.view(sid)
    assert view is not None
    assert view.hidden_head is not None
    assert view.hidden_head.seq == 2
    with pytest.raises(StaleView) as exc:
        verifier.check(sid, "k1", at=T0 + 100)
    assert exc.value.details["anchored_seq"] == 2
    assert exc.value.details["log_seq"] == 1
    with pytest.raises(StaleView):
        verifier.jwks(sid)


def test_anchors_are_reported(scenario: Scenario, verifier: Verifier) -> None:
    view = verifier.view(scenario.sid("alice"))
    assert view is not None
    assert {a.source for a in view.anchors} == {"direct", "batch"}
    assert view.anchored is not None
    assert view.anchored.seq == 1


def test_staleness_is_reported_and_enforced(scenario: Scenario) -> None:
    v = Verifier.from_bundle(scenario.data(), scenario.block_hash, now=NOW)
    assert v.staleness == NOW - CHECKPOINT_TIME
    with pytest.raises(BundleStale) as exc:
        Verifier.from_bundle(scenario.data(), scenario.block_hash, max_staleness=999, now=NOW)
    assert exc.value.details["age"] == 1000
    Verifier.from_bundle(scenario.data(), "0x" + scenario.block_hash.hex(), max_staleness=1000, now=NOW)


def test_expected_domain(scenario: Scenario) -> None:
    Verifier.from_bundle(scenario.data(), scenario.block_hash, now=NOW, domain=DOMAIN)
    with pytest.raises(DomainMismatch):
        Verifier.from_bundle(scenario.data(), scenario.block_hash, now=NOW, domain=Domain(1, DOMAIN.verifying_contract))


def test_gzip_and_roundtrip_are_deterministic(scenario: Scenario) -> None:
    bundle = decode_bundle(scenario.data())
    raw = encode_bundle(bundle)
    assert encode_bundle(decode_bundle(raw)) == raw
    gz = encode_bundle(bundle, compress=True)
    assert gz == encode_bundle(bundle, compress=True)
    assert gz[:2] == b"\x1f\x8b"
    v = Verifier.from_bundle(gz, scenario.block_hash, now=NOW)
    assert v.check(scenario.sid("alice"), "k1", at=T0 + 1000).ok


def test_bundle_from_file(scenario: Scenario, tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "b.json"  # type: ignore[operator]
    path.write_bytes(scenario.data())
    assert Verifier.from_bundle(path, scenario.block_hash, now=NOW).subjects


def test_parallel_load_gives_the_same_views(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    import keyreg.verify.loading as loading_module

    monkeypatch.setattr(loading_module, "_PARALLEL_MIN_SUBJECTS", 1)
    serial = Verifier.from_bundle(scenario.data(), scenario.block_hash, now=NOW, workers=1)
    parallel = Verifier.from_bundle(scenario.data(), scenario.block_hash, now=NOW, workers=3)
    assert serial.subjects == parallel.subjects
    for sid in serial.subjects:
        assert serial.view(sid) == parallel.view(sid)
    obj = scenario.copy()
    scenario.subject_obj(obj, "frank")["events"][1]["timestamp"] += 1
    with pytest.raises(LogInvalid):
        Verifier.from_bundle(scenario.data(obj), scenario.block_hash, now=NOW, workers=3)
