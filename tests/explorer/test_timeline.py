"""The explorer's pure parts: the SVG timeline (intervals, overlaps, escaping), the ballot's typed
data (what a wallet signs is what the governor checks), time parsing and the mount path."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.config import Config, ExplorerConfig
from keyreg.explorer import timeline
from keyreg.explorer.routes import ExplorerError, ballot_to_sign, parse_time
from keyreg.gov.ballots import Ballot, decode_ballot, validate_ballot

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_800_000_000


def key(
    kid: str, start: int, not_after: int = 0, revoked_at: int | None = None, status: str = "valid"
) -> dict[str, Any]:
    return {
        "keyId": kid,
        "validFrom": start,
        "notAfter": not_after,
        "revokedAt": revoked_at,
        "status": status,
        "publishedSeq": 0,
    }


def view(keys: list[dict[str, Any]], gov: list[dict[str, Any]] | None = None, revoked: Any = None) -> dict[str, Any]:
    return {"keys": keys, "governanceRevocations": gov or [], "revoked": revoked}


def test_lanes_end_at_the_earliest_of_retirement_and_revocations() -> None:
    v = view(
        [key("a", T0, not_after=T0 + 500), key("b", T0, not_after=T0 + 900, revoked_at=T0 + 300), key("c", T0 + 10)],
        gov=[{"keyId": "c", "effectiveAt": T0 + 700, "proposalId": "42"}],
    )
    got = {lane.key_id: lane for lane in timeline.lanes(v)}
    assert (got["a"].end, got["a"].ended_by) == (T0 + 500, "retired")
    assert (got["b"].end, got["b"].ended_by) == (T0 + 300, "revoked-controllers")
    assert (got["c"].end, got["c"].ended_by, got["c"].proposal_id) == (T0 + 700, "revoked-governance", "42")
    whole = view([key("a", T0)], gov=[{"keyId": "", "effectiveAt": T0 + 5, "proposalId": "7"}])
    assert timeline.lanes(whole)[0].ended_by == "revoked-governance"


intervals = st.lists(st.tuples(st.integers(0, 40), st.one_of(st.none(), st.integers(0, 40))), min_size=0, max_size=6)


@settings(max_examples=300, deadline=None)
@given(intervals)
def test_overlaps_are_exactly_the_times_two_or_more_keys_are_valid(spans: list[tuple[int, int | None]]) -> None:
    lanes = [timeline.Lane(str(i), a, b, "valid", "", "", None) for i, (a, b) in enumerate(spans)]
    bands = timeline.overlaps(lanes)
    for t in range(45):  # [start, end) intervals; None = open
        valid = sum(1 for lane in lanes if lane.start <= t and (lane.end is None or t < lane.end))
        inside = any(a <= t and (b is None or t < b) for a, b in bands)
        assert inside == (valid >= 2), (t, spans, bands)


def test_svg_escapes_every_text_and_stays_well_formed() -> None:
    nasty = '</title><script>alert(1)</script><a href="javascript:alert(2)">x</a>&amp;'
    v = view(
        [key("k<script>", T0, not_after=T0 + 100), key('k"><svg onload=alert(3)>', T0 + 50)],
        revoked={"at": T0 + 80, "seq": 3, "reason": nasty},
        gov=[{"keyId": "k<script>", "effectiveAt": T0 + 60, "proposalId": '1"><script>'}],
    )
    svg = str(timeline.render(v, T0 + 70, proposal_url="/proposals"))
    root = ET.fromstring(svg)  # noqa: S314 - our own output; well-formed: nothing broke out of an attribute
    assert root.findall(f".//{SVG}script") == []
    assert all(not (a.get("href") or "").startswith("javascript") for a in root.iter(f"{SVG}a"))
    assert {g.get("data-key") for g in root.iter(f"{SVG}g")} == {"k<script>", 'k"><svg onload=alert(3)>'}
    titles = "".join(t.text or "" for t in root.iter(f"{SVG}title"))
    assert nasty in titles  # shown, as text


def test_ranges_zoom_around_now() -> None:
    lanes = timeline.lanes(view([key("a", T0 - 400 * 86_400)]))
    assert timeline.window(lanes, T0, "7d") == (T0 - 7 * 86_400, T0 + 7 * 86_400 // 4)
    lo, hi = timeline.window(lanes, T0, None)
    assert lo < T0 - 400 * 86_400 < T0 < hi


def test_the_ballot_a_wallet_signs_is_the_one_the_governor_checks() -> None:
    member = Account.from_key(bytes.fromhex("44" * 32))
    governor = "0x" + "ab" * 20
    pid = 2**255 + 12345  # beyond JSON's exact integers: carried as a string
    typed, ballot = ballot_to_sign(31337, governor, "keyreg DAO", pid, 1, member.address, 3)
    message = {k: int(v) if k in ("proposalId", "nonce") else v for k, v in typed["message"].items()}
    signed = Account.sign_typed_data(member.key, full_message={**typed, "message": message})
    wire = decode_ballot({**ballot, "signature": "0x" + bytes(signed.signature).hex()})
    validate_ballot(wire, 31337)  # recovers to the voter
    assert encode_typed_data(full_message={**typed, "message": message}).body is not None
    assert wire == Ballot(31337, bytes.fromhex("ab" * 20), "keyreg DAO", pid, 1, wire.voter, 3, wire.signature)
    assert "0x" + wire.voter.hex() == member.address.lower()


@pytest.mark.parametrize(
    ("raw", "want"),
    [("", None), ("now", None), ("1700000000", 1_700_000_000), ("2027-01-01", 1_798_761_600),
     ("2027-01-01T00:00", 1_798_761_600), ("2027-01-01T00:00:30Z", 1_798_761_630)],
)  # fmt: skip
def test_times_are_unix_or_iso_utc(raw: str, want: int | None) -> None:
    assert parse_time(raw) == want


@pytest.mark.parametrize("raw", ["<script>", "1e9", "２０２７", "9" * 30, "2027-13-01"])
def test_other_times_are_refused_without_echo(raw: str) -> None:
    with pytest.raises(ExplorerError) as info:
        parse_time(raw)
    assert raw not in info.value.message


def test_the_explorer_cannot_shadow_the_api() -> None:
    from keyreg.api.app import ApiContext
    from keyreg.explorer.routes import routes
    from keyreg.registry import Registry
    from keyreg.store.memory import MemoryStore

    for path in ("/v1", "/v1/x", "/metrics"):
        cfg = replace(Config(), explorer=ExplorerConfig(path=path))
        with pytest.raises(ValueError, match="shadow"):
            routes(ApiContext(Registry(cfg.domain, MemoryStore(), cfg.limits), cfg))
    off = replace(Config(), explorer=ExplorerConfig(enabled=False))
    assert routes(ApiContext(Registry(off.domain, MemoryStore(), off.limits), off)) == []
