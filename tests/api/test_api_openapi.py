"""Issue 13 finding 17: the OpenAPI document describes every route, status and content type served.

The routes are walked from the app itself (Starlette's routes and the hot route answered before
them); statuses are probed, through the app and through the HTTP front end on a real socket, and
every answer seen must be documented for its operation with its content type.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from api_support import NOW, Subject, make_api, obj
from server_support import run
from starlette.routing import Route
from starlette.testclient import TestClient

from keyreg.api.middleware import HotRoutes
from keyreg.api.openapi import openapi_document
from keyreg.api.server import LeanServer
from keyreg.explorer.routes import routes as explorer_routes
from keyreg.registry import Registry

DOC = openapi_document()


def _response(template: str | None, method: str, status: int) -> dict[str, Any]:
    """The documented response of an operation (or, without one, of any path) for a status."""
    if template is None:
        name = {404: "NotFound", 405: "MethodNotAllowed"}[status]
        return DOC["components"]["responses"][name]
    op = DOC["paths"][template][method.lower()]
    entry = op["responses"].get(str(status))
    assert entry is not None, f"{method} {template} answered {status}, which is not documented"
    if "$ref" in entry:
        entry = DOC["components"]["responses"][entry["$ref"].rsplit("/", 1)[1]]
    return entry


def _check(template: str | None, method: str, status: int, content_type: str | None) -> None:
    entry = _response(template, method, status)
    if content_type is not None and method != "HEAD":
        media = content_type.split(";")[0].strip()
        assert media in entry.get("content", {}), (template, method, status, media, entry)


def test_every_route_and_method_is_documented_and_nothing_else() -> None:
    client, _, _, _ = make_api()
    app = client.app
    served: set[tuple[str, str]] = set()
    pages = {r.path for r in explorer_routes(app.state.ctx)}  # type: ignore[attr-defined]  # HTML, not the API
    for route in app.routes:  # type: ignore[attr-defined]
        assert isinstance(route, Route)
        if route.path in pages:
            continue
        served.update((route.path, m.lower()) for m in route.methods or ())
    hot = [m for m in app.user_middleware if m.cls is HotRoutes]  # type: ignore[attr-defined]
    assert len(hot) == 1
    served.update((r.template, m.lower()) for r in hot[0].kwargs["routes"] for m in r.methods)
    documented = {(path, method) for path, item in DOC["paths"].items() for method in item}
    assert served == documented
    assert ("/v1/gov/ballots", "post") in documented
    for path, item in DOC["paths"].items():  # path parameters documented for every {name}
        for op in item.values():
            names = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert names == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, path
    did = DOC["paths"]["/v1/subjects/{subject}/did.json"]["get"]["responses"]["200"]["content"]
    assert list(did) == ["application/did+json"]


@pytest.fixture
def api() -> tuple[TestClient, Registry, Subject]:
    client, registry, _, config = make_api(rate_limit_per_s=0)
    s = Subject.make(config)
    assert client.post("/v1/events", json=obj(s.inception)).status_code == 200
    return client, registry, s


def test_probed_statuses_and_content_types_are_documented(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _, s = api
    sid, unknown = s.id, "0x" + "ab" * 32
    probes: list[tuple[str | None, str, str, dict[str, Any]]] = [
        ("/v1/events", "POST", "/v1/events", {"json": obj(s.inception)}),
        ("/v1/events", "POST", "/v1/events", {"content": b"{"}),
        ("/v1/events", "POST", "/v1/events", {"json": {"events": []}}),
        ("/v1/events", "POST", "/v1/events", {"json": {"events": [obj(s.inception)] * 1001}}),
        ("/v1/events", "POST", "/v1/events", {"json": {**obj(s.inception), "chainId": 1}}),
        ("/v1/events", "POST", "/v1/events", {"json": {**obj(s.inception), "timestamp": NOW + 1}}),
        ("/v1/subjects/{subject}", "GET", f"/v1/subjects/{sid}", {}),
        ("/v1/subjects/{subject}", "GET", f"/v1/subjects/{unknown}", {}),
        ("/v1/subjects/{subject}", "GET", "/v1/subjects/0x12", {}),
        ("/v1/subjects/{subject}", "GET", f"/v1/subjects/{sid}?at=x", {}),
        ("/v1/subjects/{subject}", "HEAD", f"/v1/subjects/{sid}", {}),
        ("/v1/subjects/{subject}/events", "GET", f"/v1/subjects/{sid}/events", {}),
        ("/v1/subjects/{subject}/events", "GET", f"/v1/subjects/{sid}/events?from=9223372036854775808", {}),
        ("/v1/subjects/{subject}/events", "GET", f"/v1/subjects/{unknown}/events", {}),
        ("/v1/subjects/{subject}/keys/{kid}", "GET", f"/v1/subjects/{sid}/keys/k1", {}),
        ("/v1/subjects/{subject}/keys/{kid}", "GET", f"/v1/subjects/{sid}/keys/k1?purpose=X", {}),
        ("/v1/subjects/{subject}/keys/{kid}", "GET", f"/v1/subjects/{sid}/keys/{'x' * 65}", {}),
        ("/v1/subjects/{subject}/keys/{kid}", "HEAD", f"/v1/subjects/{sid}/keys/k1", {}),
        ("/v1/subjects/{subject}/jwks.json", "GET", f"/v1/subjects/{sid}/jwks.json", {}),
        ("/v1/subjects/{subject}/jwks.json", "GET", f"/v1/subjects/{sid}/jwks.json?at=-1", {}),
        ("/v1/subjects/{subject}/jwks.json", "GET", f"/v1/subjects/{unknown}/jwks.json", {}),
        ("/v1/subjects/{subject}/did.json", "GET", f"/v1/subjects/{sid}/did.json", {}),
        ("/v1/subjects/{subject}/did.json", "GET", f"/v1/subjects/{unknown}/did.json", {}),
        ("/v1/subjects/{subject}/duplicity", "GET", f"/v1/subjects/{sid}/duplicity", {}),
        ("/v1/subjects/{subject}/duplicity", "GET", "/v1/subjects/zz/duplicity", {}),
        ("/v1/health", "GET", "/v1/health", {}),
        ("/metrics", "GET", "/metrics", {}),
        ("/openapi.json", "GET", "/openapi.json", {}),
        ("/v1/gov/proposals", "GET", "/v1/gov/proposals", {}),
        ("/v1/gov/proposals", "GET", "/v1/gov/proposals?governor=0x1", {}),
        ("/v1/gov/proposals/{pid}", "GET", "/v1/gov/proposals/1", {}),
        ("/v1/gov/proposals/{pid}", "GET", "/v1/gov/proposals/x", {}),
        ("/v1/gov/ballots", "POST", "/v1/gov/ballots", {"content": b"{}"}),
        ("/v1/gov/ballots", "GET", "/v1/gov/ballots", {}),
        ("/v1/gov/ballots", "GET", "/v1/gov/ballots?limit=1001", {}),
        ("/v1/gov/ballots/{rid}", "GET", "/v1/gov/ballots/nope", {}),
        ("/v1/gov/ballots/{rid}", "GET", f"/v1/gov/ballots/0x{'1' * 40}:1:0x{'2' * 40}", {}),
        (None, "DELETE", "/v1/health", {}),
        (None, "BREW", f"/v1/subjects/{sid}", {}),
        (None, "GET", "/v1/nothing/here", {}),
    ]
    seen: dict[tuple[str | None, str], set[int]] = {}
    for template, method, url, kw in probes:
        r = client.request(method, url, **kw)
        _check(template, method, r.status_code, r.headers.get("content-type"))
        if r.status_code >= 400 and method != "HEAD" and r.headers["content-type"] == "application/json":
            assert set(r.json()) >= {"code", "message"}, (url, r.text)
        seen.setdefault((template, method), set()).add(r.status_code)
    # the probes did reach the statuses they were written for
    assert seen[("/v1/events", "POST")] >= {200, 400, 413, 422}
    assert seen[("/v1/subjects/{subject}", "GET")] == {200, 400, 404}
    assert seen[("/v1/gov/proposals", "GET")] == {400, 503}
    assert seen[(None, "DELETE")] == {405}
    assert client.get(f"/v1/subjects/{sid}/did.json").headers["content-type"] == "application/did+json"


def test_rate_limited_answers_are_documented() -> None:
    client, _, _, _ = make_api(rate_limit_per_s=0.001, rate_burst=1)
    client.get("/openapi.json")
    for template, method, url in (
        ("/openapi.json", "GET", "/openapi.json"),
        ("/v1/events", "POST", "/v1/events"),
        ("/v1/gov/ballots", "GET", "/v1/gov/ballots"),
        ("/v1/subjects/{subject}/keys/{kid}", "GET", "/v1/subjects/0x" + "ab" * 32 + "/keys/k1"),
    ):
        r = client.request(method, url)
        assert r.status_code == 429
        _check(template, method, 429, r.headers["content-type"])
    for path in ("/v1/health", "/metrics"):
        assert "429" not in DOC["paths"][path]["get"]["responses"]
        assert client.get(path).status_code == 200


FRONT_END_PROBES = [
    (b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n", 400),
    (b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-length: 5000\r\n\r\n", 413),
    (b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\n{", 408),
    (b"GET /v1/health HTTP/1.1\r\nhost: t\r\nexpect: 42\r\n\r\n", 417),
    (b"GET /v1/health HTTP/1.1\r\nhost: t\r\nx: " + b"a" * 5000 + b"\r\n\r\n", 431),
    (b"POST /v1/events HTTP/1.1\r\nhost: t\r\ntransfer-encoding: gzip\r\n\r\n", 501),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
]


def test_front_end_answers_are_documented_on_every_operation() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, registry: Registry) -> None:
        seen = set()
        for raw, want in FRONT_END_PROBES:
            c = await connect()
            await c.send(raw)
            status, headers, body = await c.response()
            assert status == want, raw
            assert set(json.loads(body)) == {"code", "message"}
            seen.add((status, headers["content-type"]))
            await c.stream.aclose()
            with trio.fail_after(10):  # the per-client cap counts connections until the server ends them
                while server.open:
                    await trio.sleep(0.01)
        held = [await connect() for _ in range(2)]  # max_connections_per_client=2: the third is busy
        for c in held:
            await c.send(b"GET /v1/health HTTP/1.1\r\nhost: t\r\n\r\n")
            assert (await c.response())[0] == 200
        c = await connect()
        status, headers, _ = await c.response()
        seen.add((status, headers["content-type"]))
        assert {s for s, _ in seen} == {400, 408, 413, 417, 431, 501, 503, 505}
        for path, item in DOC["paths"].items():
            for method in item:
                for status, content_type in seen:
                    _check(path, method.upper(), status, content_type)

    run(
        t,
        api={"rate_limit_per_s": 0, "max_body_bytes": 4096, "body_timeout_s": 0.3, "max_connections_per_client": 2},
        h11_max_incomplete_size=4096,
    )
