"""Key verdicts at time T: every status, their precedence, governance and the JWKS view."""

from __future__ import annotations

import pytest

from keyreg.core.keystate import STATUSES, key_verdict, valid_keys
from keyreg.core.log import SubjectState, replay
from keyreg.core.records import GovernanceRevocation
from tests.vectors import generate as gen

T0 = gen.T0
GOV = gen.address("dao")


def _state() -> SubjectState:
    """k-sign: [T0, T0+1000) sign+jwt; k-future: from T0+500; k-rev: revoked from T0+300 by controllers."""
    w = gen.LogWriter(gen.DEVNET)
    w.incept(
        T0,
        ["a"],
        1,
        None,
        keys=[
            gen.key("k-sign", "Ed25519", ["sign", "jwt"], T0 - 100, T0 + 1000),
            gen.key("k-rev", "P-256", ["tls"], T0),
        ],
        governor=GOV,
    )
    w.update(T0 + 10, ["a"], publish=[gen.key("k-future", "secp256k1", ["sign"], T0 + 500)])
    w.update(T0 + 20, ["a"], publish=[gen.key("k-late", "Ed25519", ["sign"], T0)])  # not-before before publication
    w.revoke(T0 + 30, ["a"], "k-rev", T0 + 300, "retired host")
    return replay(w.events, gen.DEVNET)[-1].state


STATE = _state()
S = STATE.subject


def status(key_id: str, at: int, purpose: str | None = None, **kw: object) -> str:
    return key_verdict(STATE, S, key_id, at, purpose, **kw).status  # type: ignore[arg-type]


def test_every_status_is_reachable() -> None:
    seen = {
        key_verdict(None, S, "k-sign", T0).status,
        status("k-sign", T0 + 1, disputed=True),
        status("nope", T0),
        status("k-rev", T0 + 300),
        status("k-future", T0 + 499),
        status("k-sign", T0 + 1000),
        status("k-sign", T0 + 1, "tls"),
        status("k-sign", T0 + 1, "jwt"),
    }
    assert seen == set(STATUSES)


def test_validity_starts_at_publication_not_before() -> None:
    # k-sign has notBefore T0-100 but was published at T0: never valid before its publication
    assert status("k-sign", T0 - 50) == "not-yet-valid"
    assert status("k-sign", T0) == "valid"
    assert status("k-late", T0 + 19) == "not-yet-valid"
    assert status("k-late", T0 + 20) == "valid"
    assert STATE.keys["k-late"].valid_from == T0 + 20


def test_not_after_is_exclusive() -> None:
    assert status("k-sign", T0 + 999) == "valid"
    assert status("k-sign", T0 + 1000) == "expired"


def test_revocation_is_effective_from_its_time_and_wins_over_time_checks() -> None:
    assert status("k-rev", T0 + 299) == "valid"
    v = key_verdict(STATE, S, "k-rev", T0 + 300)
    assert v.status == "revoked"
    assert v.revoked is not None
    assert (v.revoked.by, v.revoked.since, v.revoked.seq) == ("controller", T0 + 300, 3)
    assert v.revoked.reason == "retired host"
    # revoked outranks wrong-purpose and expired
    assert status("k-rev", T0 + 10**6, "sign") == "revoked"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"disputed": True}, "disputed"),  # disputed outranks everything but unknown-subject
    ],
)
def test_disputed_fails_closed(kwargs: dict[str, bool], expected: str) -> None:
    assert status("k-sign", T0 + 1, "sign", **kwargs) == expected
    assert status("nope", T0 + 1, **kwargs) == expected
    assert key_verdict(None, S, "k-sign", T0, disputed=True).status == "unknown-subject"


def test_unknown_key_outranks_revocation_of_the_subject() -> None:
    gov = [GovernanceRevocation(S, "", T0, b"\x00" * 32, 1, GOV)]
    assert status("nope", T0 + 5, governance=gov) == "unknown-key"
    assert status("k-sign", T0 + 5, governance=gov) == "revoked"


def test_governance_only_from_the_governor_named_at_inception() -> None:
    rogue = [GovernanceRevocation(S, "k-sign", T0, b"\x01" * 32, 9, gen.address("rogue"))]
    assert status("k-sign", T0 + 1, governance=rogue) == "valid"
    other_subject = [GovernanceRevocation(b"\x99" * 32, "k-sign", T0, b"\x01" * 32, 9, GOV)]
    assert status("k-sign", T0 + 1, governance=other_subject) == "valid"
    ours = [GovernanceRevocation(S, "k-sign", T0 + 5, b"\x01" * 32, 9, GOV)]
    v = key_verdict(STATE, S, "k-sign", T0 + 5, governance=ours)
    assert v.status == "revoked"
    assert v.revoked is not None
    assert (v.revoked.by, v.revoked.proposal_id, v.revoked.governor) == ("governance", 9, GOV)
    assert v.to_dict()["revoked"]["proposalId"] == "9"


def test_a_subject_without_governor_ignores_governance() -> None:
    w = gen.LogWriter(gen.DEVNET)
    w.incept(T0, ["a"], 1, None, keys=[gen.key("k", "Ed25519", ["sign"], T0)])
    state = replay(w.events, gen.DEVNET)[-1].state
    zero_gov = [GovernanceRevocation(state.subject, "k", T0, b"\x00" * 32, 1, b"\x00" * 20)]
    assert key_verdict(state, state.subject, "k", T0 + 1, governance=zero_gov).status == "valid"


def test_earliest_revocation_wins() -> None:
    gov = [GovernanceRevocation(S, "k-rev", T0 + 100, b"\x02" * 32, 3, GOV)]
    v = key_verdict(STATE, S, "k-rev", T0 + 150, governance=gov)
    assert v.revoked is not None
    assert (v.status, v.revoked.by, v.revoked.since) == ("revoked", "governance", T0 + 100)


def test_whole_subject_revocation_revokes_every_key_from_its_time() -> None:
    w = gen.LogWriter(gen.DEVNET)
    w.incept(T0, ["a"], 1, None, keys=[gen.key("k", "Ed25519", ["sign"], T0)])
    w.revoke(T0 + 50, ["a"], "", T0 + 40, "closed")
    state = replay(w.events, gen.DEVNET)[-1].state
    assert key_verdict(state, state.subject, "k", T0 + 39).status == "valid"
    v = key_verdict(state, state.subject, "k", T0 + 40)
    assert v.revoked is not None
    assert v.revoked.whole_subject
    assert "subject revoked" in v.reason


def test_valid_keys_is_the_jwks_view() -> None:
    # ordered by publishing seq, then key id
    assert [r.key.key_id for r in valid_keys(STATE, T0 + 100)] == ["k-rev", "k-sign", "k-late"]
    assert [r.key.key_id for r in valid_keys(STATE, T0 + 600, "sign")] == ["k-sign", "k-future", "k-late"]
    assert [r.key.key_id for r in valid_keys(STATE, T0 + 600, "tls")] == []


def test_verdict_to_dict() -> None:
    d = key_verdict(STATE, S, "k-sign", T0 + 1, "jwt").to_dict()
    assert d["status"] == "valid"
    assert d["valid"] is True
    assert d["subject"] == "0x" + S.hex()
    assert d["key"]["alg"] == "Ed25519"
    assert d["key"]["validFrom"] == T0
    assert d["key"]["notAfter"] == T0 + 1000
