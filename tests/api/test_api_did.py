"""did.json and jwks.json give a key's purposes one meaning (node/core/purposes.py, docs/protocol.md
9.5), and did.json is a DID Core document as a maintained DID library (pydid) reads it."""

from __future__ import annotations

import pytest
from api_support import NOW, Subject, make_api, obj
from hypothesis import given
from hypothesis import strategies as st
from pydid import DIDDocument, VerificationMethod
from starlette.testclient import TestClient

from keyreg.core.purposes import DID_RELATIONSHIPS, PURPOSES, did_relationships, jwk_usage
from keyreg.keys.service_keys import ServiceKey
from keyreg.verify import signatures

# The DID Core property names of the relationships, as pydid's model spells them.
_PYDID_FIELD = {
    "authentication": "authentication",
    "assertionMethod": "assertion_method",
    "keyAgreement": "key_agreement",
}
_JWK_MEMBERS = ("kid", "kty", "crv", "x", "y", "alg", "use", "key_ops")


def _publish(purposes: tuple[str, ...], alg: str = "P-256") -> tuple[TestClient, Subject, ServiceKey]:
    client, _, _, config = make_api()
    s = Subject.make(config)
    assert client.post("/v1/events", json=obj(s.inception)).json()["status"] == "accepted"
    key = ServiceKey.generate(alg, "k2")
    r = client.post("/v1/events", json=obj(s.next_update(NOW, [key.published(purposes, NOW)])))
    assert r.json()["status"] == "accepted", r.text
    return client, s, key


def _did(client: TestClient, s: Subject) -> tuple[dict, DIDDocument]:
    r = client.get(f"/v1/subjects/{s.id}/did.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/did+json")
    raw = r.json()
    return raw, DIDDocument.deserialize(raw)  # raises on anything DID Core's data model refuses


def _relationships_of(doc: DIDDocument, vm_id: str) -> tuple[str, ...]:
    """The relationships that reference vm_id, each reference resolved through pydid."""
    found = []
    for name in DID_RELATIONSHIPS:
        refs = getattr(doc, _PYDID_FIELD[name]) or []
        for ref in refs:
            vm = doc.dereference(ref)  # a reference to nothing raises IDNotFoundError
            assert isinstance(vm, VerificationMethod)
            if str(vm.id) == vm_id:
                found.append(name)
    return tuple(found)


def test_sign_purpose_is_a_verification_relationship() -> None:
    # "sign" is the purpose of our own vectors; the JWKS always called it a signing key, and did.json
    # referenced it from no relationship, so a DID verifier ignored the key.
    client, s, _ = _publish(("sign",))
    raw, doc = _did(client, s)
    vm_id = f"{raw['id']}#k2"
    assert _relationships_of(doc, vm_id) == ("authentication", "assertionMethod")
    vm = doc.dereference(vm_id)
    assert vm.type == "JsonWebKey2020"
    jwks = client.get(f"/v1/subjects/{s.id}/jwks.json").json()
    jwk = next(k for k in jwks["keys"] if k["kid"] == "k2")
    assert jwk["use"] == "sig"
    assert {m: jwk[m] for m in ("kty", "crv", "x", "y")} == vm.public_key_jwk


@pytest.mark.parametrize("purpose", sorted(PURPOSES))
def test_each_purpose_in_the_table(purpose: str) -> None:
    client, s, _ = _publish((purpose,))
    raw, doc = _did(client, s)
    meaning = PURPOSES[purpose]
    assert _relationships_of(doc, f"{raw['id']}#k2") == meaning.relationships
    jwk = next(k for k in client.get(f"/v1/subjects/{s.id}/jwks.json").json()["keys"] if k["kid"] == "k2")
    assert jwk["use"] == meaning.use
    assert "key_ops" not in jwk


def test_mixed_and_unknown_purposes() -> None:
    client, s, _ = _publish(("auth", "enc", "tls"))
    raw, doc = _did(client, s)
    assert _relationships_of(doc, f"{raw['id']}#k2") == ("authentication", "keyAgreement")
    jwk = next(k for k in client.get(f"/v1/subjects/{s.id}/jwks.json").json()["keys"] if k["kid"] == "k2")
    assert "use" not in jwk  # RFC 7517 4.3: use and key_ops not both
    assert jwk["key_ops"] == ["encrypt", "verify", "wrapKey"]
    assert jwk["purposes"] == ["auth", "enc", "tls"]

    client, s, _ = _publish(("tls",), alg="Ed25519")
    raw, doc = _did(client, s)
    assert _relationships_of(doc, f"{raw['id']}#k2") == ()
    assert [str(vm.id) for vm in doc.verification_method or []] == [f"{raw['id']}#k1", f"{raw['id']}#k2"]
    jwk = next(k for k in client.get(f"/v1/subjects/{s.id}/jwks.json").json()["keys"] if k["kid"] == "k2")
    assert "use" not in jwk
    assert "key_ops" not in jwk


def test_revoked_subject_document_still_parses() -> None:
    client, s, _ = _publish(("sig",))
    ev = s.next_revocation(NOW, "", NOW)
    assert client.post("/v1/events", json=obj(ev)).json()["status"] == "accepted"
    raw, doc = _did(client, s)
    assert raw["deactivated"] is True
    assert doc.verification_method in (None, [])


@pytest.mark.parametrize("alg", ["Ed25519", "P-256", "secp256k1"])
def test_offline_verifier_jwk_matches_the_node(alg: str) -> None:
    """The offline verifier's JWKS (node/verify) and the node's give one key the same JWK members."""
    purposes = ("sig", "enc")
    client, s, key = _publish(purposes, alg)
    node_jwk = next(k for k in client.get(f"/v1/subjects/{s.id}/jwks.json").json()["keys"] if k["kid"] == "k2")
    offline = signatures.jwk("k2", alg, key.public_key, purposes)
    assert {m: node_jwk[m] for m in _JWK_MEMBERS if m in node_jwk} == offline


_KNOWN = sorted(PURPOSES)
_purposes = st.lists(
    st.sampled_from([*_KNOWN, "tls", "x:y", "signer", "encrypted"]), min_size=1, max_size=16, unique=True
)


@given(_purposes)
def test_jwk_and_did_agree_on_what_a_key_is_for(purposes: list[str]) -> None:
    """A key the DID document lets sign (authentication/assertionMethod) is one the JWK says verifies,
    a key it lets agree keys is one the JWK says encrypts, and the other way round."""
    usage = jwk_usage(purposes)
    assert not ("use" in usage and "key_ops" in usage)
    ops = set(usage.get("key_ops", []))
    verifies = usage.get("use") == "sig" or "verify" in ops
    encrypts = usage.get("use") == "enc" or "encrypt" in ops
    rel = set(did_relationships(purposes))
    assert verifies == bool(rel & {"authentication", "assertionMethod"})
    assert encrypts == ("keyAgreement" in rel)
    assert list(did_relationships(purposes)) == [r for r in DID_RELATIONSHIPS if r in rel]
