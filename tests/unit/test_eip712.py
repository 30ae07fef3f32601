"""The fast EIP-712 path equals eth-account's generic implementation, and wallet signatures are accepted.

eth-account is the reference: ``encode_typed_data`` over our exported ``eth_signTypedData_v4`` JSON
must give exactly the digest the fast path computes, ``Account.recover_message`` must give the
signers the fast path recovers, and a signature made by ``Account.sign_typed_data`` (what a wallet
does) must be accepted by ``apply_event``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import keccak as eth_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core import builder
from keyreg.core.codec import decode_event, dumps_canonical, encode_event
from keyreg.core.eip712 import domain_separator, event_digest, hash_struct, typed_data
from keyreg.core.errors import BelowThreshold
from keyreg.core.log import apply_event, recover_signers, replay
from keyreg.core.records import (
    Delegation,
    Domain,
    Event,
    Inception,
    KeyRetirement,
    OperatorSet,
    PublishedKey,
    Revocation,
    Rotation,
    SignedEvent,
    Update,
)
from tests.vectors import generate as gen

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def reference_digest(domain: Domain, event: Event) -> tuple[bytes, SignableMessage]:
    """The digest as eth-account computes it from the exported typed-data JSON."""
    signable = encode_typed_data(full_message=json.loads(json.dumps(typed_data(domain, event))))
    return eth_keccak(b"\x19" + signable.version + signable.header + signable.body), signable


def _all_vector_events() -> list[SignedEvent]:
    out: list[SignedEvent] = []
    for log in json.loads((VECTORS / "valid_logs.json").read_text())["logs"]:
        out += [decode_event(dumps_canonical(o)) for o in log["events"]]
    for v in json.loads((VECTORS / "typed_data.json").read_text())["events"]:
        out.append(decode_event(dumps_canonical(v["wire"])))
    for case in json.loads((VECTORS / "invalid.json").read_text())["cases"]:
        if "event" in case:
            try:
                out.append(decode_event(dumps_canonical(case["event"])))
            except Exception:  # noqa: S112  malformed cases have no event to hash
                continue
    return out


VECTOR_EVENTS = _all_vector_events()


def test_fast_path_equals_eth_account_on_every_vector() -> None:
    assert len(VECTOR_EVENTS) > 40
    for signed in VECTOR_EVENTS:
        digest, signable = reference_digest(signed.domain, signed.event)
        assert event_digest(signed.domain, signed.event) == digest
        assert signable.header == domain_separator(signed.domain)
        assert signable.body == hash_struct(signed.event)
        for sig in signed.signatures:
            if sig[64] not in (27, 28) or int.from_bytes(sig[32:64], "big") > gen.SECP256K1_N // 2:
                continue  # the malleable encodings we reject on purpose
            reference = bytes.fromhex(Account.recover_message(signable, signature=sig)[2:])
            assert reference in recover_signers(SignedEvent(signed.event, (sig,), signed.domain), digest)


# ---------------------------------------------------------------------------------------------
# Random events (any field values EIP-712 can encode; shape rules do not matter for hashing)

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
b32 = st.binary(min_size=32, max_size=32)
addresses = st.lists(st.binary(min_size=20, max_size=20), max_size=4).map(lambda a: tuple(sorted(set(a))))
published = st.builds(
    PublishedKey,
    key_id=texts,
    alg=st.sampled_from(["Ed25519", "secp256k1", "P-256", ""]),
    public_key=st.binary(max_size=40),
    purposes=st.lists(texts, max_size=3).map(tuple),
    not_before=u64,
    not_after=u64,
)
operator_sets = st.builds(
    OperatorSet,
    operators=addresses,
    threshold=st.integers(0, 255),
    purposes=st.lists(texts, max_size=3).map(tuple),
    max_validity=u64,
    max_keys=st.integers(0, 2**16 - 1),
)
domains = st.builds(
    Domain,
    chain_id=st.integers(min_value=0, max_value=2**256 - 1),
    verifying_contract=st.binary(min_size=20, max_size=20),
)
events = st.one_of(
    st.builds(
        Inception,
        timestamp=u64,
        controllers=addresses,
        threshold=st.integers(0, 255),
        next_commitment=b32,
        governor=st.binary(min_size=20, max_size=20),
        keys=st.lists(published, max_size=3).map(tuple),
        metadata=texts,
        operators=operator_sets,
    ),
    st.builds(
        Update,
        subject=b32,
        seq=u64,
        prev=b32,
        timestamp=u64,
        publish=st.lists(published, max_size=3).map(tuple),
        retire=st.lists(st.builds(KeyRetirement, key_id=texts, not_after=u64), max_size=3).map(tuple),
        set_metadata=st.booleans(),
        metadata=texts,
    ),
    st.builds(
        Rotation,
        subject=b32,
        seq=u64,
        prev=b32,
        timestamp=u64,
        controllers=addresses,
        threshold=st.integers(0, 255),
        next_commitment=b32,
        governor=st.binary(min_size=20, max_size=20),
        operators=operator_sets,
    ),
    st.builds(Delegation, subject=b32, seq=u64, prev=b32, timestamp=u64, operators=operator_sets),
    st.builds(
        Revocation,
        subject=b32,
        seq=u64,
        prev=b32,
        timestamp=u64,
        key_id=texts,
        effective_at=u64,
        reason=texts,
    ),
)


def test_vectors_cover_every_kind_and_operator_sets() -> None:
    kinds = {s.event.kind for s in VECTOR_EVENTS}
    assert kinds == {"inception", "update", "rotation", "revocation", "delegation"}
    with_operators = [s for s in VECTOR_EVENTS if getattr(s.event, "operators", None)]
    assert {s.event.kind for s in with_operators} == {"inception", "rotation", "delegation"}


@settings(max_examples=80, deadline=None)
@given(domain=domains, event=events, label=st.sampled_from(["w1", "w2", "w3"]))
def test_fast_path_equals_eth_account_on_random_events(domain: Domain, event: Event, label: str) -> None:
    digest, signable = reference_digest(domain, event)
    assert event_digest(domain, event) == digest
    signed = builder.sign_event(domain, event, [gen.secret(label)])
    reference = bytes.fromhex(Account.recover_message(signable, signature=signed.signatures[0])[2:])
    assert recover_signers(signed, digest) == (reference,) == (gen.address(label),)


# ---------------------------------------------------------------------------------------------
# Wallet interoperability: signatures made by eth-account over the exported JSON are accepted


def _wallet_sign(label: str, domain: Domain, event: Event, how: str) -> bytes:
    data: dict[str, Any] = json.loads(json.dumps(typed_data(domain, event)))
    key = "0x" + gen.secret(label).hex()
    if how == "sign_typed_data":
        signed = Account.sign_typed_data(key, full_message=data)
    else:
        signed = Account.sign_message(encode_typed_data(full_message=data), key)
    return bytes(signed.signature)


def test_wallet_signatures_build_a_valid_log() -> None:
    domain = gen.DEVNET
    w = gen.LogWriter(domain)
    inc = builder.inception(
        gen.T0,
        [gen.address("w1"), gen.address("w2")],
        2,
        [gen.address("w3")],
        1,
        keys=[gen.key("sig", "Ed25519", ["sign"], gen.T0)],
    )
    sigs = [_wallet_sign("w1", domain, inc, "sign_typed_data"), _wallet_sign("w2", domain, inc, "sign_message")]
    w.append(builder.attach_signatures(domain, inc, sigs))
    upd = w.next_update(gen.T0 + 1, publish=[gen.key("tls", "P-256", ["tls"], gen.T0 + 1)])
    sigs = [_wallet_sign(lbl, domain, upd, "sign_typed_data") for lbl in ("w2", "w1")]
    w.append(builder.attach_signatures(domain, upd, sigs))
    rot = w.next_rotation(gen.T0 + 2, ["w3"], 1, None)
    w.append(builder.attach_signatures(domain, rot, [_wallet_sign("w3", domain, rot, "sign_message")]))
    rev = w.next_revocation(gen.T0 + 3, "tls", gen.T0 + 3, "rotated out")
    w.append(builder.attach_signatures(domain, rev, [_wallet_sign("w3", domain, rev, "sign_typed_data")]))
    # protocol 2: the controller names an operator by delegation; the operator's wallet signs an update
    dlg = w.next_delegation(gen.T0 + 4, gen.operators_of(["w-op"], 1, ["sign"], 3600, 4))
    w.append(builder.attach_signatures(domain, dlg, [_wallet_sign("w3", domain, dlg, "sign_typed_data")]))
    op_upd = w.next_update(gen.T0 + 5, publish=[gen.key("op-sig", "Ed25519", ["sign"], gen.T0 + 5, gen.T0 + 60)])
    w.append(builder.attach_signatures(domain, op_upd, [_wallet_sign("w-op", domain, op_upd, "sign_message")]))
    accepted = replay(w.events, domain)
    assert accepted[-1].state.seq == 5
    assert [a.authority for a in accepted[-2:]] == ["controllers", "operators"]
    assert accepted[0].signers == tuple(sorted((gen.address("w1"), gen.address("w2"))))
    # one wallet signature of a 2-of-2 set is recognised but not enough; the wire form carries it intact
    signed = builder.attach_signatures(domain, upd, [_wallet_sign("w1", domain, upd, "sign_typed_data")])
    with pytest.raises(BelowThreshold):
        apply_event(accepted[0].state, decode_event(encode_event(signed)), domain)


def test_typed_data_nests_the_operator_set_struct() -> None:
    """A wallet sees the operator set as a nested struct (types OperatorSet listed, message an object)."""
    ops = gen.operators_of(["w-op"], 1, ["sign", "jwt"], 3600, 4)
    dlg = builder.delegation(b"\x01" * 32, 1, b"\x02" * 32, gen.T0, ops)
    data = typed_data(gen.DEVNET, dlg)
    assert set(data["types"]) == {"EIP712Domain", "Delegation", "OperatorSet"}
    assert data["domain"]["version"] == "2"
    assert data["message"]["operators"] == {
        "operators": [Account.from_key(gen.secret("w-op")).address],
        "threshold": 1,
        "purposes": ["sign", "jwt"],
        "maxValidity": 3600,
        "maxKeys": 4,
    }
    inc = builder.inception(gen.T0, [gen.address("w1")], 1, operators=ops)
    assert set(typed_data(gen.DEVNET, inc)["types"]) == {"EIP712Domain", "Inception", "OperatorSet", "PublishedKey"}
    assert reference_digest(gen.DEVNET, dlg)[0] == event_digest(gen.DEVNET, dlg)


def test_wallet_signature_is_low_s_with_v_27_or_28() -> None:
    inc = builder.inception(gen.T0, [gen.address("w1")], 1)
    sig = _wallet_sign("w1", gen.DEVNET, inc, "sign_typed_data")
    assert len(sig) == 65
    assert sig[64] in (27, 28)
    assert int.from_bytes(sig[32:64], "big") <= gen.SECP256K1_N // 2
    assert sig == builder.sign_event(gen.DEVNET, inc, [gen.secret("w1")]).signatures[0]  # RFC 6979 on both sides
