"""Red-team review fixes in the verifier SDK: every hostile input gets the SDK's documented error.

M4: a malformed signed-request header raises RequestRejected (never ValueError/UnicodeError).
"""

from __future__ import annotations

import pytest
from conftest import NOW, Scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from verify_helpers import T0

from node.verify import RequestRejected, RequestSigner, RequestVerifier, Verifier
from node.verify import requests as rq


@pytest.fixture(scope="module")
def verifier(scenario: Scenario) -> Verifier:
    return Verifier.from_bundle(scenario.data(), scenario.block_hash, now=NOW)


@pytest.fixture(scope="module")
def signed(scenario: Scenario) -> dict[str, str]:
    signer = RequestSigner(scenario.sid("alice"), "k2", "P-256", scenario.actors["alice"].secrets["k2"])
    return signer.sign("POST", "api.example.com", "/v1/pay", b"{}", now=T0 + 1000)


def _service(verifier: Verifier) -> RequestVerifier:
    return RequestVerifier(verifier, "api.example.com", window_s=300, clock=lambda: T0 + 1000)


@pytest.mark.parametrize("value", ["²", "١٧٣٣٠٠٠٠٠٠", "１２３", "", "-1", "1e3", " 1", "9" * 13])
def test_a_non_ascii_or_malformed_timestamp_is_refused_as_malformed(
    verifier: Verifier, signed: dict[str, str], value: str
) -> None:
    headers = {**signed, rq.H_TIMESTAMP: value}
    with pytest.raises(RequestRejected) as exc:
        _service(verifier).verify("POST", "/v1/pay", headers, b"{}")
    assert exc.value.reason == "malformed-header"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(rq.HEADERS),
    value=st.one_of(
        st.text(max_size=140),
        # digits and numbers of every script (str.isdigit() is true for some, int() refuses some)
        st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=13),
        # lone surrogates, which an HTTP layer decoding with surrogateescape can hand over
        st.text(st.characters(categories=["Cs", "Cc", "Zs"]), min_size=1, max_size=20),
    ),
)
def test_any_malformed_header_value_raises_request_rejected(
    verifier: Verifier, signed: dict[str, str], name: str, value: str
) -> None:
    original = {k.lower(): v for k, v in signed.items()}
    headers = {**original, name: value}
    service = _service(verifier)
    if value == original[name]:  # the untouched value: the honest request passes
        service.verify("POST", "/v1/pay", headers, b"{}")
        return
    with pytest.raises(RequestRejected) as exc:
        service.verify("POST", "/v1/pay", headers, b"{}")
    assert exc.value.reason in rq.REASONS
