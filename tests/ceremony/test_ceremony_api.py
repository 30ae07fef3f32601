"""/v1/proposals on the API app (in-memory store, fixed clock): the ceremony over HTTP and its bounds.

Each bound is shown to bite: caps per subject and in all (junk cannot evict a proposal that holds a
signature), expiry, the per-client budgets charged before any parse, body caps, strict bodies.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from api_support import NEXT, NOW, SECRETS, Clock, Subject, obj
from starlette.testclient import TestClient

from keyreg.api.app import ApiContext, create_app
from keyreg.config import ApiConfig, Config, ProposalsConfig
from keyreg.core import builder
from keyreg.core.codec import event_to_obj
from keyreg.core.hashing import SECP256K1_N, sign_digest
from keyreg.core.records import SignedEvent
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

OUTSIDER = bytes([9]) * 32


def make(api: dict[str, Any] | None = None, **proposals: Any) -> tuple[TestClient, Registry, Clock, Subject]:
    clock = Clock()
    config = Config()
    config = replace(
        config,
        api=replace(ApiConfig(), **({"rate_limit_per_s": 0} | (api or {}))),
        proposals=replace(ProposalsConfig(), **proposals),
    )
    registry = Registry(config.domain, MemoryStore(), config.limits, clock=clock)
    client = TestClient(create_app(ApiContext(registry, config)), client=("127.0.0.1", 5000))
    s = Subject.make(config)
    assert client.post("/v1/events", json=obj(s.inception)).status_code == 200
    return client, registry, clock, s


def unsigned(s: Subject, kind: str = "revocation", t: int = NOW + 1, tag: str = "") -> tuple[dict[str, Any], bytes]:
    """The wire form of an unsigned event after the subject's head, and its digest."""
    from keyreg.core.eip712 import event_digest

    if kind == "revocation":
        ev: Any = builder.revocation(s.subject, s.seq + 1, s.head, t, "k1", NOW, "lost" + tag)
    elif kind == "rotation":
        ev = builder.rotation(
            s.subject, s.seq + 1, s.head, t, builder.controller_set(NEXT), 2, builder.controller_set(SECRETS), 2
        )
    else:
        ev = builder.update(s.subject, s.seq + 1, s.head, t, metadata="m" + tag)
    return event_to_obj(SignedEvent(ev, (), s.config.domain)), event_digest(s.config.domain, ev)


def sig(secret: bytes, digest: bytes) -> str:
    return "0x" + sign_digest(secret, digest).hex()


def test_a_revocation_ceremony_over_the_api() -> None:
    client, registry, _, s = make()
    event, digest = unsigned(s)
    pid = "0x" + digest.hex()
    r = client.post("/v1/proposals", json={"event": event})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] == pid
    assert body["missing"] == 2
    assert body["stale"] is False
    assert body["authority"]["signers"] == ["0x" + a.hex() for a in builder.controller_set(SECRETS)]
    assert client.post("/v1/proposals", json={"event": event}).status_code == 200  # already held
    listed = client.get("/v1/proposals", params={"subject": s.id}).json()["proposals"]
    assert [p["id"] for p in listed] == [pid]
    url = f"/v1/proposals/{pid}/signatures"
    r = client.post(url, json={"signature": sig(OUTSIDER, digest)})
    assert (r.status_code, r.json()["code"]) == (422, "unauthorized_signer")
    r = client.post(url, json={"signature": sig(NEXT[0], digest)})  # the next set may not revoke
    assert (r.status_code, r.json()["code"]) == (422, "unauthorized_signer")
    good = sign_digest(SECRETS[2], digest)
    s_high = (SECP256K1_N - int.from_bytes(good[32:64], "big")).to_bytes(32, "big")
    r = client.post(url, json={"signature": "0x" + (good[:32] + s_high + bytes((55 - good[64],))).hex()})
    assert (r.status_code, r.json()["code"]) == (422, "bad_signature")
    r = client.post(url, json={"signature": "0x" + good.hex()})
    assert r.status_code == 200
    assert r.json()["missing"] == 1
    assert r.json()["submitted"] is None
    r = client.post(url, json={"signature": "0x" + good.hex()})
    assert (r.status_code, r.json()["code"]) == (409, "duplicate_signature")
    r = client.post(url, json={"signature": sig(SECRETS[0], digest)})
    assert r.status_code == 200
    done = r.json()
    assert done["complete"] is True
    assert done["submitted"]["status"] == "accepted"
    state = registry.state(s.subject)
    assert state is not None
    assert state.seq == 1
    assert state.keys["k1"].revoked_at == NOW
    r = client.post(url, json={"signature": sig(SECRETS[1], digest)})
    assert (r.status_code, r.json()["code"]) == (409, "proposal_complete")
    assert client.get(f"/v1/proposals/{pid}").json()["stale"] is True  # done: the head moved on


def test_a_rotation_created_with_a_signature_collects_from_the_revealed_set() -> None:
    client, registry, _, s = make()
    event, digest = unsigned(s, "rotation")
    r = client.post("/v1/proposals", json={"event": event, "signatures": [sig(SECRETS[0], digest)]})
    assert (r.status_code, r.json()["code"]) == (422, "unauthorized_signer")  # keys in force cannot rotate
    r = client.post("/v1/proposals", json={"event": event, "signatures": [sig(NEXT[1], digest)]})
    assert r.status_code == 201
    assert r.json()["signers"] == ["0x" + builder.controller_set([NEXT[1]])[0].hex()]
    # the same event again with the second signature completes it
    r = client.post("/v1/proposals", json={"event": event, "signatures": [sig(NEXT[2], digest)]})
    assert r.status_code == 200
    assert r.json()["submitted"]["status"] == "accepted"
    state = registry.state(s.subject)
    assert state is not None
    assert state.controllers == builder.controller_set(NEXT)


def test_a_proposal_whose_head_moved_on_is_stale_and_refused_before_any_recovery() -> None:
    client, _, _, s = make()
    event, digest = unsigned(s)
    assert client.post("/v1/proposals", json={"event": event}).status_code == 201
    assert client.post("/v1/events", json=obj(s.next_update(NOW + 2, retire=[("k1", NOW + 100)]))).status_code == 200
    pid = "0x" + digest.hex()
    assert client.get(f"/v1/proposals/{pid}").json()["stale"] is True
    from keyreg.core.log import signatures_recovered

    before = signatures_recovered()
    r = client.post(f"/v1/proposals/{pid}/signatures", json={"signature": sig(SECRETS[0], digest)})
    assert (r.status_code, r.json()["code"]) == (409, "stale_proposal")
    assert signatures_recovered() == before
    r = client.post("/v1/proposals", json={"event": event})
    assert (r.status_code, r.json()["code"]) == (409, "stale_proposal")


def test_a_proposal_that_breaks_a_rule_is_refused_and_nothing_is_kept() -> None:
    client, _, _, s = make()
    event, _ = unsigned(s)
    for bad, code in (
        ({**event, "keyId": "nope"}, "invalid_transition"),
        ({**event, "chainId": 1}, "wrong_network"),
        ({**event, "seq": 7}, "chain_broken"),
        ({**event, "timestamp": NOW + 10_000}, "timestamp"),
        ({**event, "signatures": ["0x" + "11" * 65]}, "malformed"),
        ({**event, "extra": 1}, "malformed"),
    ):
        r = client.post("/v1/proposals", json={"event": bad})
        assert r.json()["code"] == code, (bad, r.text)
        assert r.status_code in (400, 409, 422)
    r = client.post("/v1/proposals", json={"event": event, "authority": "operators"})
    assert (r.status_code, r.json()["code"]) == (422, "proposal")
    assert client.get("/v1/proposals", params={"subject": s.id}).json()["proposals"] == []


def test_bodies_ids_and_queries_are_checked() -> None:
    client, _, _, s = make(max_body_bytes=4096)
    event, digest = unsigned(s)
    pid = "0x" + digest.hex()
    assert client.post("/v1/proposals", content=b"[" * 4000).json()["code"] == "malformed"  # not an object
    assert client.post("/v1/proposals", content=b'{"event":' + b"[" * 100 + b"]" * 100 + b"}").status_code == 400
    assert client.post("/v1/proposals", content=b"{" + b" " * 5000 + b"}").status_code == 413
    assert client.post("/v1/proposals", json={"event": event, "more": 1}).status_code == 400
    assert client.post("/v1/proposals", json={"event": event, "signatures": "0x"}).status_code == 400
    assert client.post("/v1/proposals", json={"event": event, "signatures": ["0x12"]}).json()["code"] == "bad_signature"
    assert client.post("/v1/proposals", json={"event": event}).status_code == 201
    url = f"/v1/proposals/{pid}/signatures"
    assert client.post(url, content=b'{"signature":"' + b"0" * 2000 + b'"}').status_code == 413
    assert client.post(url, json={"signature": "0x1", "x": 1}).json()["code"] == "malformed"
    assert client.post(url, json={"signature": "zz"}).json()["code"] == "bad_signature"
    assert client.get("/v1/proposals/0x12").json()["code"] == "malformed_id"
    assert client.get("/v1/proposals/0x" + "ab" * 32).status_code == 404
    assert client.post("/v1/proposals/0x" + "ab" * 32 + "/signatures", json={"signature": "0x"}).status_code == 404
    assert client.get("/v1/proposals").json()["code"] == "bad_query"
    assert client.get("/v1/proposals", params={"subject": "x" * 500}).status_code == 400


def test_caps_keep_signed_proposals_and_drop_junk_first() -> None:
    client, _, _, s = make(max_pending_per_subject=2, max_pending=3)
    backed, backed_digest = unsigned(s, tag="a")
    r = client.post("/v1/proposals", json={"event": backed, "signatures": [sig(SECRETS[0], backed_digest)]})
    assert r.status_code == 201
    # junk (unsigned proposals) fills the other slot; each newcomer drops the oldest unsigned one
    junk_ids = []
    for i in range(5):
        event, digest = unsigned(s, "update", tag=str(i))
        assert client.post("/v1/proposals", json={"event": event}).status_code == 201
        junk_ids.append("0x" + digest.hex())
    held = [p["id"] for p in client.get("/v1/proposals", params={"subject": s.id}).json()["proposals"]]
    assert held == ["0x" + backed_digest.hex(), junk_ids[-1]]
    # a second signed proposal takes the junk's slot; then the subject is full of signed ones
    other, other_digest = unsigned(s, tag="b")
    r = client.post("/v1/proposals", json={"event": other, "signatures": [sig(SECRETS[1], other_digest)]})
    assert r.status_code == 201
    event, _ = unsigned(s, "update", tag="late")
    r = client.post("/v1/proposals", json={"event": event})
    assert (r.status_code, r.json()["code"]) == (503, "capacity")
    # the node-wide cap: another subject's proposals count too
    t = Subject.make(s.config, t=NOW + 1)
    assert client.post("/v1/events", json=obj(t.inception)).status_code == 200
    e1, d1 = unsigned(t, tag="t1")
    assert client.post("/v1/proposals", json={"event": e1, "signatures": [sig(SECRETS[0], d1)]}).status_code == 201
    e2, _ = unsigned(t, "update", tag="t2")
    r = client.post("/v1/proposals", json={"event": e2})
    assert (r.status_code, r.json()["code"]) == (503, "capacity")


def test_proposals_expire_after_their_ttl() -> None:
    client, _, clock, s = make(ttl_s=600)
    event, digest = unsigned(s)
    assert client.post("/v1/proposals", json={"event": event}).status_code == 201
    clock.t += 599
    assert client.get(f"/v1/proposals/0x{digest.hex()}").status_code == 200
    clock.t += 2
    assert client.get(f"/v1/proposals/0x{digest.hex()}").status_code == 404
    assert client.get("/v1/proposals", params={"subject": s.id}).json()["proposals"] == []


def test_per_client_budgets_are_charged_before_any_parse() -> None:
    client, _, _, s = make(
        api={"rate_limit_per_s": 1000, "rate_burst": 1000},
        creates_per_client_per_s=0.001,
        creates_burst=2,
        signatures_per_client_per_s=0.001,
        signatures_burst=3,
    )
    event, digest = unsigned(s)
    assert client.post("/v1/proposals", json={"event": event}).status_code == 201
    assert client.post("/v1/proposals", content=b"junk").status_code == 400
    r = client.post("/v1/proposals", content=b"junk")  # over the budget: refused unparsed
    assert r.status_code == 429
    assert r.json()["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    url = f"/v1/proposals/0x{digest.hex()}/signatures"
    assert client.post(url, json={"signature": sig(OUTSIDER, digest)}).status_code == 422
    assert client.post(url, json={"signature": sig(OUTSIDER, digest)}).status_code == 422
    assert client.post(url, json={"signature": sig(SECRETS[0], digest)}).status_code == 200
    r = client.post(url, json={"signature": sig(SECRETS[1], digest)})
    assert r.status_code == 429
    # another client has its own budget
    other = TestClient(client.app, client=("127.0.0.2", 5000))
    assert other.post(url, json={"signature": sig(SECRETS[1], digest)}).json()["submitted"]["status"] == "accepted"


def test_ceremonies_can_be_switched_off() -> None:
    client, _, _, s = make(enabled=False)
    event, _ = unsigned(s)
    assert client.post("/v1/proposals", json={"event": event}).status_code == 404
    assert client.get("/v1/proposals", params={"subject": s.id}).status_code == 404


def test_a_proposal_completed_while_the_same_event_is_proposed_again_is_ingested_once() -> None:
    import anyio
    import httpx

    client, registry, _, s = make()
    event, digest = unsigned(s)
    pid = "0x" + digest.hex()
    assert (
        client.post("/v1/proposals", json={"event": event, "signatures": [sig(SECRETS[0], digest)]}).status_code == 201
    )
    answers: list[httpx.Response] = []

    async def race() -> None:
        transport = httpx.ASGITransport(app=client.app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:

            async def send(url: str, body: dict[str, Any]) -> None:
                answers.append(await http.post(url, json=body))

            async with anyio.create_task_group() as tg:
                tg.start_soon(send, f"/v1/proposals/{pid}/signatures", {"signature": sig(SECRETS[1], digest)})
                for _ in range(5):
                    tg.start_soon(send, "/v1/proposals", {"event": event})

    anyio.run(race)
    assert all(r.status_code in (200, 201) for r in answers), [r.text for r in answers]
    assert registry.counters.get("accepted", 0) == 2  # the inception and the revocation, once
    assert registry.counters.get("known", 0) == 0
    health = client.get("/v1/health").json()["services"]["proposals"]
    assert health["pending"] == 1
    assert health["enabled"] is True


def test_one_client_cannot_fill_the_book_with_self_signed_inceptions() -> None:
    """An inception proposal names its own signers, so anyone can sign one: such a signature does not
    protect it, and one client holds at most proposals.max_pending_per_client of the book."""
    from keyreg.core.eip712 import event_digest
    from keyreg.core.hashing import keccak

    honest, _, _, s = make(max_pending=6, max_pending_per_client=4)
    attacker = TestClient(honest.app, client=("10.0.0.9", 4000))
    held: list[str] = []
    for i in range(10):
        mine = [keccak(f"filler-{i}-{j}".encode()) for j in range(2)]
        ev = builder.inception(NOW, builder.controller_set(mine), 2, builder.controller_set(mine[:1]), 1)
        digest = event_digest(s.config.domain, ev)
        own = sig(sorted(mine, key=lambda k: builder.controller_set([k])[0])[0], digest)
        event = event_to_obj(SignedEvent(ev, (), s.config.domain))
        r = attacker.post("/v1/proposals", json={"event": event, "signatures": [own]})
        assert r.status_code == 201, r.text  # it only ever recycles its own slots
        held.append("0x" + digest.hex())
    mine_held = [p for p in held if attacker.get(f"/v1/proposals/{p}").status_code == 200]
    assert mine_held == held[-4:]
    # the honest ceremonies still find room, and push the attacker's inceptions out as the book fills
    for tag in "abc":
        event, digest = unsigned(s, tag=tag)
        r = honest.post("/v1/proposals", json={"event": event, "signatures": [sig(SECRETS[0], digest)]})
        assert r.status_code == 201, r.text
    assert sum(attacker.get(f"/v1/proposals/{p}").status_code == 200 for p in held) == 3  # 4 + 3 > 6
