"""Red-team review fixes in the verifier SDK: every hostile input gets the SDK's documented error.

M4: a malformed signed-request header raises RequestRejected (never ValueError/UnicodeError).
M5: deeply nested RLP (a bundle's checkpoint header) is refused, `keyreg verify` exits 20.
M6: a gzip bundle inflates to at most its cap (a ratio of its size, and an absolute bound).
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pytest
from conftest import NOW, Scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner
from verify_helpers import T0

import keyreg.cli.verify as cli_verify
from keyreg.cli import app
from keyreg.core.hashing import keccak
from keyreg.verify import RequestRejected, RequestSigner, RequestVerifier, Verifier, bundle, rlp
from keyreg.verify import requests as rq
from keyreg.verify.errors import BundleFormatError
from keyreg.verify.header import HeaderError, decode_header


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


# --- M5: deeply nested RLP is refused, never a RecursionError ---------------------------------


def _nested_rlp(depth: int) -> bytes:
    item = b"\xc0"
    for _ in range(depth):
        item = rlp._prefix(len(item), 0xC0, 0xF7) + item
    return item


@pytest.mark.parametrize("depth", [rlp.MAX_DEPTH + 1, 5_000, 120_000])
def test_deeply_nested_rlp_is_refused(depth: int) -> None:
    raw = _nested_rlp(depth)
    with pytest.raises(rlp.RLPError, match="nested deeper"):
        rlp.decode(raw)
    with pytest.raises(HeaderError):
        decode_header(raw)


def test_rlp_nesting_up_to_the_limit_still_decodes() -> None:
    raw = _nested_rlp(rlp.MAX_DEPTH - 1)
    assert rlp.encode(rlp.decode(raw)) == raw


def test_keyreg_verify_refuses_a_deeply_nested_checkpoint_header_with_exit_20(
    scenario: Scenario, tmp_path: Path
) -> None:
    # The pin vouches for the hostile header itself (the verifier pinned what it was given), so the
    # cheap hash check passes and the decoder must refuse the nesting.
    deep = _nested_rlp(120_000)
    pinned = keccak(deep)
    obj = scenario.copy()
    obj["checkpoint"]["header"] = "0x" + deep.hex()
    obj["checkpoint"]["hash"] = "0x" + pinned.hex()
    path = tmp_path / "deep.bundle.json"
    path.write_text(json.dumps(obj))
    args = [
        "verify",
        "0x" + scenario.sid("alice").hex(),
        "k1",
        "--bundle",
        str(path),
        "--checkpoint",
        "0x" + pinned.hex(),
    ]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == cli_verify.EXIT_CODES["bundle-refused"] == 20, result.output
    assert "nested deeper" in json.loads(result.output)["error"]["message"]


def test_a_checkpoint_header_that_does_not_hash_to_the_pin_is_refused_before_decoding(
    scenario: Scenario, tmp_path: Path
) -> None:
    obj = scenario.copy()
    obj["checkpoint"]["header"] = "0x" + _nested_rlp(120_000).hex()  # pinned hash stays the honest block's
    path = tmp_path / "deep.bundle.json"
    path.write_text(json.dumps(obj))
    args = ["verify", "0x" + scenario.sid("alice").hex(), "k1", "--bundle", str(path)]
    result = CliRunner().invoke(app, [*args, "--checkpoint", "0x" + scenario.block_hash.hex(), "--json"])
    assert result.exit_code == 20, result.output
    assert "does not hash to the pinned" in json.loads(result.output)["error"]["message"]


# --- M6: a gzip bomb is refused after inflating at most its cap -------------------------------


def _bomb(inflated: int) -> bytes:
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1 << 24)
    return b"".join([co.compress(b"{"), *(co.compress(chunk) for _ in range(inflated >> 24)), co.flush()])


def test_a_gzip_bomb_is_refused_at_its_inflation_cap(scenario: Scenario) -> None:
    bomb = _bomb(1 << 30)  # ~1 MB that inflates to 1 GiB of whitespace
    assert len(bomb) < 2 << 20
    cap = max(bundle.INFLATE_FLOOR_BYTES, bundle.MAX_INFLATE_RATIO * len(bomb))
    assert cap < 128 << 20
    with pytest.raises(BundleFormatError, match="inflates beyond"):
        bundle.read_bytes(bomb)
    with pytest.raises(BundleFormatError, match="inflates beyond"):
        Verifier.from_bundle(bomb, scenario.block_hash, now=NOW)


def test_the_absolute_inflation_cap_holds_for_large_files() -> None:
    data = gzip.compress(b"{" + b" " * (3 << 20) + b"}", compresslevel=1)
    with pytest.raises(BundleFormatError, match="inflates beyond"):
        bundle.read_bytes(data, max_bytes=1 << 20)
    assert len(bundle.read_bytes(data)) == (3 << 20) + 2  # under the default cap


def test_a_real_gzip_bundle_still_loads(scenario: Scenario) -> None:
    compressed = gzip.compress(scenario.data())
    assert bundle.read_bytes(compressed) == scenario.data()
    v = Verifier.from_bundle(compressed, scenario.block_hash, now=NOW)
    assert v.verify_signature(scenario.sid("alice"), "k1", b"x", b"", at=T0 + 1000) is not None
