"""Published EC keys must be points of their curve (review M1).

Before, only lengths and the SEC1 prefix were checked: an inception publishing a P-256 key
``02 || ff*32`` and a secp256k1 key ``02 || 00*32`` was accepted, its ``keys/<id>`` verdict said
``valid``, and the subject's ``jwks.json`` and ``did.json`` answered 500 with a traceback each.
Now such a key is malformed when published, and the views leave out a stored key that has no JWK
(a node may hold keys stored before the rule) instead of failing.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from keyreg.api import views
from keyreg.core import builder
from keyreg.core.errors import MalformedEvent
from keyreg.core.hashing import keccak
from keyreg.core.log import KeyRecord, apply_event
from keyreg.core.points import is_curve_point
from keyreg.core.records import Domain, PublishedKey
from keyreg.keys.service_keys import ServiceKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
NOW = 1_700_000_000
SECRET = keccak(b"curve-points")
NOT_POINTS = {"P-256": b"\x02" + b"\xff" * 32, "secp256k1": b"\x02" + b"\x00" * 32}


def inception_with(key: PublishedKey) -> object:
    ev = builder.inception(NOW, builder.controller_set([SECRET]), 1, keys=[key])
    return builder.sign_event(DOMAIN, ev, [SECRET])


@pytest.mark.parametrize("alg", sorted(NOT_POINTS))
def test_an_ec_key_that_is_no_curve_point_is_malformed(alg: str) -> None:
    bad = PublishedKey("k", alg, NOT_POINTS[alg], ("sig",), NOW, 0)
    assert not is_curve_point(alg, bad.public_key)
    with pytest.raises(MalformedEvent, match="not a point of its curve"):
        apply_event(None, inception_with(bad), DOMAIN)  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", ["P-256", "secp256k1", "Ed25519"])
def test_real_keys_pass(alg: str) -> None:
    key = ServiceKey.generate(alg, "k").published(("sig",), NOW)
    assert is_curve_point(alg, key.public_key)
    assert apply_event(None, inception_with(key), DOMAIN).state.keys["k"].key == key  # type: ignore[arg-type]


def test_views_leave_out_a_stored_key_that_has_no_jwk() -> None:
    good = ServiceKey.generate("P-256", "good").published(("sig",), NOW)
    state = apply_event(None, inception_with(good), DOMAIN).state  # type: ignore[arg-type]
    bad = KeyRecord(PublishedKey("bad", "P-256", NOT_POINTS["P-256"], ("sig",), NOW, 0), 0, NOW, 0)
    legacy = replace(state, keys=MappingProxyType({**state.keys, "bad": bad}))  # stored before the rule
    records = list(legacy.keys.values())
    assert [k["kid"] for k in views.jwks(records)["keys"]] == ["good"]
    doc = views.did_document(31337, legacy, records)
    assert [m["id"].rsplit("#", 1)[1] for m in doc["verificationMethod"]] == ["good"]
    refs = [ref for name in ("authentication", "assertionMethod") for ref in doc.get(name, [])]
    assert refs
    assert all(ref.endswith("#good") for ref in refs)


def test_the_api_answers_jwks_and_did_for_a_subject_holding_a_stored_bad_key() -> None:
    from api_support import Subject, make_api, obj

    client, registry, _, config = make_api(rate_limit_per_s=0)
    subject = Subject.make(config, alg="P-256")
    assert client.post("/v1/events", json=obj(subject.inception)).status_code == 200
    state = registry.states[subject.subject]
    bad = KeyRecord(PublishedKey("bad", "secp256k1", NOT_POINTS["secp256k1"], ("sig",), 0, 0), 0, 0, 0)
    registry.states[subject.subject] = replace(state, keys=MappingProxyType({**state.keys, "bad": bad}))
    for path in ("jwks.json", "did.json"):
        r = client.get(f"/v1/subjects/{subject.id}/{path}")
        assert r.status_code == 200, r.text
        assert "bad" not in r.text
        assert "k1" in r.text
    bad_key = PublishedKey("p256", "P-256", NOT_POINTS["P-256"], ("sig",), 0, 0)
    ev = builder.inception(0, builder.controller_set([SECRET]), 1, keys=[bad_key])
    r = client.post("/v1/events", json=obj(builder.sign_event(config.domain, ev, [SECRET])))
    assert r.status_code == 400
    assert r.json()["code"] == "malformed"
