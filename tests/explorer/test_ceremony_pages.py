"""The Ceremonies page (explorer page 6) on the API app, in process: what each kind of proposal would
do, in words; who signed and who still may; the typed data a wallet signs; attacker text escaped;
the list across subjects and per subject; errors. The browser flow is in test_browser.py."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

import pytest
from eth_account import Account
from explorer_fixture import HOSTILE, HOSTILE_REASON

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from keyreg.api.app import ApiContext, create_app
from keyreg.config import ApiConfig, Config, ExplorerConfig, ProposalsConfig
from keyreg.core import builder
from keyreg.core.codec import event_to_obj
from keyreg.core.eip712 import event_digest, typed_data
from keyreg.core.hashing import address_of_private_key, sign_digest
from keyreg.core.records import PublishedKey, SignedEvent
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

NOW = 1_700_000_000
CONTROLLERS = [bytes([i]) * 32 for i in (1, 2, 3)]
NEXT = [bytes([i]) * 32 for i in (4, 5, 6)]
OPERATOR = bytes([7]) * 32
OUTSIDER = bytes([9]) * 32


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return float(self.t)


def addr(secret: bytes) -> str:
    return "0x" + address_of_private_key(secret).hex()


def app(per_page: int = 50, **proposals: Any) -> tuple[TestClient, Registry, Config, bytes]:
    """The API with the explorer, a 2-of-3 subject with a next set, an operator and key k1."""
    config = replace(
        Config(),
        api=replace(ApiConfig(), rate_limit_per_s=0),
        proposals=replace(ProposalsConfig(), **proposals),
        explorer=replace(ExplorerConfig(), ceremonies_per_page=per_page),
    )
    registry = Registry(config.domain, MemoryStore(), config.limits, clock=Clock())
    client = TestClient(create_app(ApiContext(registry, config)), client=("127.0.0.1", 5000))
    key = PublishedKey("k1", "Ed25519", bytes(32), ("sig",), NOW, 0)
    ops = builder.operator_set([address_of_private_key(OPERATOR)], 1, ["sig"], 7 * 86400, 4)
    ev = builder.inception(
        NOW, builder.controller_set(CONTROLLERS), 2, builder.controller_set(NEXT), 2, [key], operators=ops
    )
    signed = builder.sign_event(config.domain, ev, CONTROLLERS[:2])
    r = client.post("/v1/events", content=json.dumps({"events": [event_to_obj(signed)]}))
    assert r.json()["accepted"] == 1, r.text
    return client, registry, config, event_digest(config.domain, ev)


def propose(client: TestClient, registry: Registry, config: Config, sid: bytes, kind: str, **kw: Any) -> str:
    state = registry.state(sid)
    assert state is not None
    t = NOW + 10
    if kind == "update":
        new = PublishedKey("k2", "Ed25519", bytes(range(32)), ("sig", "enc"), NOW + 60, NOW + 90 * 86400)
        ev: Any = builder.next_update(state, t, publish=[new], retire=[("k1", NOW + 3600)], metadata=kw.get("meta"))
    elif kind == "revocation":
        ev = builder.next_revocation(state, t, kw.get("kid", "k1"), NOW + 5, kw.get("reason", "lost"))
    elif kind == "rotation":
        ev = builder.next_rotation(
            state,
            t,
            builder.controller_set(NEXT),
            2,
            builder.controller_set(CONTROLLERS),
            2,
            governor=bytes([0xAB]) * 20,
        )
    else:
        ops = builder.operator_set([address_of_private_key(OUTSIDER)], 1, ["sig", "enc"], 2**60, 8)
        ev = builder.next_delegation(state, t, ops)
    r = client.post("/v1/proposals", json={"event": event_to_obj(SignedEvent(ev, (), config.domain))})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


BLOCKS = {"p", "div", "li", "ul", "dt", "dd", "dl", "td", "th", "tr", "h1", "h2", "h3", "pre", "br", "section"}


def text(html: str) -> str:
    """The page's visible text (tags dropped, entities decoded), whitespace collapsed."""

    class P(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.out: list[str] = []

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag in BLOCKS:
                self.out.append(" ")

        def handle_endtag(self, tag: str) -> None:
            self.handle_starttag(tag, ())

        def handle_data(self, data: str) -> None:
            self.out.append(data)

    p = P()
    p.feed(html)
    return re.sub(r"\s+", " ", "".join(p.out))


def test_an_update_proposal_in_words_with_signers_and_commands() -> None:
    client, registry, config, sid = app()
    pid = propose(client, registry, config, sid, "update", meta="payments API v2")
    client.post(
        f"/v1/proposals/{pid}/signatures",
        json={"signature": "0x" + sign_digest(CONTROLLERS[2], bytes.fromhex(pid[2:])).hex()},
    )
    r = client.get(f"/ceremonies/{pid}")
    assert r.status_code == 200
    assert "default-src 'none'" in r.headers["content-security-policy"]
    page = text(r.text)
    assert "Update at seq 1 of subject 0x" + sid.hex() + ", collecting signatures from its controllers" in page
    assert "key k2 (Ed25519, sig, enc), valid from 2023-11-14 22:14:20 UTC until 2024-02-12 22:13:20 UTC" in page
    assert "key k1: not valid after 2023-11-14 23:13:20 UTC" in page
    assert "payments API v2" in page
    assert "1 of 2 controllers have signed; 1 more needed." in page
    signed, may = addr(CONTROLLERS[2]), sorted({addr(c) for c in CONTROLLERS[:2]})
    assert re.search(r"Signed\s*" + signed, page)
    assert re.search(r"May still sign\s*" + r"\s*".join(may), page)
    assert pid in page  # the digest
    assert f"keyreg event fetch {pid} --node http://testserver --out proposal.json" in page
    assert "keyreg event sign proposal.json --key-file" in page
    assert "cast wallet sign --data --from-file typed.json" in page
    assert 'id="wallet-sign"' in r.text  # open: the wallet button is offered
    assert f'data-post-url="/v1/proposals/{pid}/signatures"' in r.text


def test_rotation_delegation_and_revocation_in_words() -> None:
    client, registry, config, sid = app(max_pending_per_subject=8)
    rot = text(client.get(f"/ceremonies/{propose(client, registry, config, sid, 'rotation')}").text)
    assert "2 of 3 now; after it 2 of 3:" in rot
    for a in builder.controller_set(NEXT):
        assert "0x" + a.hex() in rot
    assert "Governor changes from none to 0x" + "ab" * 20 in rot
    assert "collecting signatures from its controllers" in rot
    dele = text(client.get(f"/ceremonies/{propose(client, registry, config, sid, 'delegation')}").text)
    assert "now: 1 of 1 operators " + addr(OPERATOR) in dele
    assert "may publish and retire keys for sig; each key valid at most 7 days; at most 4 live keys" in dele
    assert "after it: 1 of 1 operators " + addr(OUTSIDER) in dele
    assert f"each key valid at most {2**60} seconds" in dele
    rev = text(
        client.get(f"/ceremonies/{propose(client, registry, config, sid, 'revocation', reason='key leaked')}").text
    )
    assert "Revokes key k1, effective 2023-11-14 22:13:25 UTC Reason key leaked" in rev
    # The list across subjects and the subject's own list: every proposal, with a stable link each.
    for url in ("/ceremonies", f"/ceremonies?subject=0x{sid.hex()}"):
        listing = client.get(url)
        assert listing.status_code == 200
        assert len(re.findall(r'href="/ceremonies/0x[0-9a-f]{64}"', listing.text)) == 3
        assert "delegation: 1-of-1 operators for sig, enc" in text(listing.text)
    assert "Pending ceremonies on this node" in client.get(f"/subjects/0x{sid.hex()}").text
    assert "3 proposals on this node" in text(client.get("/").text)
    assert "This node knows no subject" in client.get("/ceremonies?subject=0x" + "11" * 32).text


def test_typed_data_is_what_the_signers_sign() -> None:
    client, registry, config, sid = app()
    pid = propose(client, registry, config, sid, "delegation")  # maxValidity 2**60: past JavaScript's safe integers
    typed = client.get(f"/ceremonies/{pid}/typed-data.json").json()
    held = client.get(f"/v1/proposals/{pid}").json()
    from keyreg.core.codec import event_from_obj

    ev = event_from_obj(held["event"], config.limits, config.domain).event
    expected = typed_data(config.domain, ev)
    assert typed["message"]["operators"]["maxValidity"] == str(2**60)  # a string, not a rounded number
    expected["message"]["operators"]["maxValidity"] = str(2**60)
    assert typed == expected
    # A wallet's signature over it (uints given as strings, as a wallet takes them) is accepted.
    msg = json.loads(json.dumps(typed))
    msg["message"]["operators"]["maxValidity"] = 2**60
    sig = Account.sign_typed_data(CONTROLLERS[0], full_message=msg).signature
    assert bytes(sig)[:64] == sign_digest(CONTROLLERS[0], bytes.fromhex(pid[2:]))[:64]
    assert client.get("/ceremonies/0x" + "00" * 32 + "/typed-data.json").json()["code"] == "not_found"
    assert client.get("/ceremonies/nothex/typed-data.json").json()["code"] == "malformed_id"


def test_attacker_text_in_a_proposal_is_escaped() -> None:
    client, registry, config, sid = app()
    meta = propose(client, registry, config, sid, "update", meta=HOSTILE)
    rev = propose(client, registry, config, sid, "revocation", reason=HOSTILE_REASON)
    for pid in (meta, rev):
        html = client.get(f"/ceremonies/{pid}").text
        assert "<script>alert" not in html
        assert "onerror=" not in html.replace("onerror=&#34;", "")  # only as escaped text
        assert 'id="pwn-' not in html
        assert "<svg onload" not in html
    assert HOSTILE in text(client.get(f"/ceremonies/{meta}").text)
    assert HOSTILE_REASON in text(client.get(f"/ceremonies/{rev}").text)
    listing = client.get("/ceremonies").text
    assert "<script>alert" not in listing
    assert 'id="pwn-' not in listing


def test_completed_stale_unknown_and_off() -> None:
    client, registry, config, sid = app()
    pid = propose(client, registry, config, sid, "revocation")
    digest = bytes.fromhex(pid[2:])
    for secret in CONTROLLERS[:2]:
        r = client.post(f"/v1/proposals/{pid}/signatures", json={"signature": "0x" + sign_digest(secret, digest).hex()})
        assert r.status_code == 200
    page = text(client.get(f"/ceremonies/{pid}").text)
    assert "Threshold reached: this node applied the event (accepted, seq 1)" in page
    assert "This proposal takes no more signatures" in page
    other = propose(client, registry, config, sid, "update")
    client.post(
        f"/v1/proposals/{other}/signatures",
        json={"signature": "0x" + sign_digest(CONTROLLERS[0], bytes.fromhex(other[2:])).hex()},
    )
    state = registry.state(sid)
    assert state is not None
    ev = builder.next_update(state, NOW + 20, metadata="moved on")
    signed = builder.sign_event(config.domain, ev, CONTROLLERS[:2])
    assert client.post("/v1/events", content=json.dumps({"events": [event_to_obj(signed)]})).json()["accepted"] == 1
    assert "Stale: another event was accepted at seq 2" in text(client.get(f"/ceremonies/{other}").text)
    r = client.get("/ceremonies/0x" + "00" * 32)
    assert r.status_code == 404
    assert "never gossiped" in r.text
    assert client.get("/ceremonies/%3Cscript%3E").status_code == 404
    assert client.get("/ceremonies?subject=%3Cscript%3E").status_code == 404
    off, _, _, _ = app(enabled=False)
    assert "Signing ceremonies are off" in off.get("/ceremonies").text
    assert off.get("/ceremonies/" + pid).status_code == 404


@pytest.mark.parametrize("kind", ["update", "rotation", "delegation", "revocation"])
def test_every_kind_renders(kind: str) -> None:
    client, registry, config, sid = app()
    pid = propose(client, registry, config, sid, kind)
    assert client.get(f"/ceremonies/{pid}").status_code == 200


def test_the_list_is_paged_newest_first() -> None:
    client, registry, config, sid = app(per_page=2)
    ids = [propose(client, registry, config, sid, kind) for kind in ("update", "rotation", "delegation")]
    first = client.get("/ceremonies").text
    assert re.findall(r'href="/ceremonies/(0x[0-9a-f]{64})"', first) == ids[::-1][:2]
    assert "1–2 of 3" in first
    assert 'href="/ceremonies?page=1" rel="next"' in first
    second = client.get("/ceremonies?page=1").text
    assert re.findall(r'href="/ceremonies/(0x[0-9a-f]{64})"', second) == ids[:1]
    assert 'rel="prev"' in second
    assert "3 proposals on this node, the 3 newest below" not in text(client.get("/").text)
    assert client.get("/ceremonies?page=x").status_code == 400
