"""Signed requests are judged at the later of their timestamp and the service's clock (issue 13, 11).

The client picks its timestamp anywhere in the +-window: a key revoked or retired in the last
minutes must not verify again because the request says it was signed before that.
"""

from __future__ import annotations

import pytest
from conftest import NOW, Scenario
from verify_helpers import T0

from keyreg.verify import RequestRejected, RequestSigner, RequestVerifier, Verifier


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def verifier(scenario: Scenario) -> Verifier:
    return Verifier.from_bundle(scenario.data(), scenario.block_hash, now=NOW)


def _signer(scenario: Scenario, name: str, key_id: str, alg: str) -> RequestSigner:
    return RequestSigner(scenario.sid(name), key_id, alg, scenario.actors[name].secrets[key_id])


def test_a_backdated_request_cannot_use_a_key_revoked_a_minute_ago(scenario: Scenario, verifier: Verifier) -> None:
    # bob's k1 is revoked from T0 + 500 (conftest); the service's clock is a minute later.
    clock = Clock(T0 + 560)
    service = RequestVerifier(verifier, "api.example.com", window_s=300, clock=clock)
    bob = _signer(scenario, "bob", "k1", "Ed25519")
    backdated = bob.sign("POST", "api.example.com", "/v1/pay", b"{}", now=T0 + 440)  # inside the window
    assert verifier.verify_signature(scenario.sid("bob"), "k1", b"x", b"", at=T0 + 440).verdict.ok  # valid back then
    with pytest.raises(RequestRejected) as exc:
        service.verify("POST", "/v1/pay", backdated, b"{}")
    assert exc.value.reason == "key-not-valid"
    assert "revoked" in exc.value.message
    assert len(service.nonces) == 0  # a refused request leaves nothing behind


def test_a_backdated_request_cannot_use_a_retired_key(scenario: Scenario, verifier: Verifier) -> None:
    # alice retires k1 at T0 + 3600 (rotation to k4 with an overlap window).
    clock = Clock(T0 + 3660)
    service = RequestVerifier(verifier, "api.example.com", window_s=300, clock=clock)
    alice = _signer(scenario, "alice", "k1", "Ed25519")
    with pytest.raises(RequestRejected) as exc:
        service.verify("GET", "/", alice.sign("GET", "api.example.com", "/", now=T0 + 3400))
    assert exc.value.reason == "key-not-valid"


def test_honest_requests_still_pass_on_both_sides_of_now(scenario: Scenario, verifier: Verifier) -> None:
    clock = Clock(T0 + 1000)
    service = RequestVerifier(verifier, "api.example.com", window_s=300, clock=clock)
    alice = _signer(scenario, "alice", "k2", "P-256")
    for skew in (-299, -1, 0, 1, 299):  # clocks disagree by up to the window
        service.verify("GET", "/", alice.sign("GET", "api.example.com", "/", now=T0 + 1000 + skew))
    bob = _signer(scenario, "bob", "k2", "Ed25519")  # bob's other key is not revoked
    service.verify("GET", "/", bob.sign("GET", "api.example.com", "/", now=T0 + 800))
