"""The explorer's pages: Starlette routes rendering Jinja2 templates (docs/explorer.md, ADR 0026).

Mounted by keyreg.api.app.create_app on the public API's port at ``[explorer] path`` ("/" by
default): the pages share the API's rate limiter and metrics, and read only what the API's routes
read (node/explorer/data.py). Every page is complete HTML without JavaScript; the one script
(static/explorer.js) refreshes the overview's figures and lets a wallet sign a ballot.

The only state-changing action a page can lead to is handing a signed ballot to
``POST /v1/gov/ballots`` (the public API does that); the explorer itself only reads. Its one chain
read, the voter's nonce for the ballot's typed data, is budgeted per client address.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import anyio.to_thread
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..core.errors import KeyregError
from ..gov.budget import HourlyBudget
from ..gov.tx import SUPPORT, SUPPORT_NAMES
from . import data, timeline

if TYPE_CHECKING:
    from ..api.app import ApiContext

Handler = Callable[[Request], Awaitable[Response]]
_HEX64 = re.compile(r"(?:0x)?([0-9a-fA-F]{64})")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_KID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
_PURPOSE = re.compile(r"[a-z0-9._:\-]+")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?Z?")
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
_ACTIVE = ("Pending", "Active", "Succeeded", "Queued")
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    """The shipped assets: name -> (bytes, content type, short hash for cache-busting URLs)."""
    out = {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if suffix in _STATIC_TYPES:
            body = item.read_bytes()
            out[item.name] = (body, _STATIC_TYPES[suffix], hashlib.sha256(body).hexdigest()[:12])
    return out


STATIC = _load_static()


def short(value: Any, keep: int = 10) -> str:
    """0x1234abcd…9f0e: long hex shortened for tables (the full value stays in a title/link)."""
    s = str(value)
    return s if len(s) <= 2 * keep + 1 else f"{s[:keep]}…{s[-6:]}"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader(__package__, "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ts"] = data.fmt_time
    env.filters["short"] = short
    return env


class ExplorerError(Exception):
    """A page cannot be shown: status and a message for people (never echoing raw input)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def parse_time(raw: str | None) -> int | None:
    """'' or None -> None (now); Unix seconds; or an ISO date/time read as UTC."""
    if not raw or raw == "now":
        return None
    if raw.isascii() and raw.isdigit() and len(raw) <= 20:
        value = int(raw)
        if value < 2**64:
            return value
    if len(raw) <= 25 and _ISO.fullmatch(raw):
        try:
            when = datetime.fromisoformat(raw.removesuffix("Z").replace(" ", "T"))
        except ValueError:
            pass
        else:
            return int(when.replace(tzinfo=UTC).timestamp())
    raise ExplorerError(400, "a time is unix seconds or an ISO date/time such as 2027-01-01T00:00 (UTC)")


def parse_sid(raw: str) -> bytes:
    m = _HEX64.fullmatch(raw)
    if m is None:
        raise ExplorerError(404, "a subject id is 32 bytes as 64 hex digits (0x-prefixed)")
    return bytes.fromhex(m.group(1))


def _int_param(raw: str, name: str, default: int, maximum: int) -> int:
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20 or int(raw) > maximum:
        raise ExplorerError(400, f"{name} must be an integer in [0, {maximum}]")
    return int(raw)


def routes(ctx: ApiContext) -> list[Route]:
    """The explorer's routes for one API context (none when ``[explorer] enabled`` is false)."""
    cfg = ctx.config.explorer
    if not cfg.enabled:
        return []
    base = "/" + cfg.path.strip("/")
    base = "" if base == "/" else base
    if base in ("/v1", "/metrics", "/openapi.json") or base.startswith("/v1/"):
        raise ValueError(f"[explorer] path {cfg.path!r} would shadow the API")
    env = _environment()
    nonce_reads = HourlyBudget(cfg.nonce_reads_per_client_per_hour)
    static_urls = {name: f"{base}/static/{name}?v={h}" for name, (_, _, h) in STATIC.items()}
    registry = ctx.registry

    def url(path: str = "", **params: Any) -> str:
        query = {k: v for k, v in params.items() if v is not None and v != ""}
        return f"{base}/{path}" + ("?" + urlencode(query) if query else "")

    def render(name: str, code: int = 200, **context: Any) -> HTMLResponse:
        page = env.get_template(name).render(
            url=url, static=static_urls, network=ctx.config.network, now=int(registry.clock()), **context
        )
        return HTMLResponse(page, status_code=code, headers={"content-security-policy": _CSP})

    def page(handler: Handler) -> Handler:
        """Turn input errors into an HTML error page."""

        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except ExplorerError as exc:
                return render("error.html", exc.status, status=exc.status, message=exc.message)

        return wrapped

    # ------------------------------------------------------------------ pages

    async def overview(request: Request) -> Response:
        health = data.health(ctx)
        props = data.proposals(ctx)
        active = [p for p in props or [] if p["state"] in _ACTIVE][:20]
        cer = data.ceremonies(ctx, limit=10)
        return render(
            "overview.html", health=health, active=active, gov_on=props is not None,
            ceremonies=None if cer is None else cer[0], ceremonies_total=0 if cer is None else cer[1],
        )  # fmt: skip

    async def search(request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        if not q:
            return RedirectResponse(url(), 303)
        if len(q) > 200:
            raise ExplorerError(400, "a search is at most 200 characters")
        sid_part, _, kid = q.replace(" ", "/").replace("#", "/").partition("/")
        if kid:  # "<subject>/<key id>": the key check page
            sid = parse_sid(sid_part)
            if not _KID.fullmatch(kid):
                raise ExplorerError(400, "a key id is 1-64 of [A-Za-z0-9._:-]")
            return RedirectResponse(url("keys", subject="0x" + sid.hex(), key=kid), 303)
        if _ADDRESS.fullmatch(q):
            addr = bytes.fromhex(q[2:])
            found = await anyio.to_thread.run_sync(_by_controller, addr)
            if len(found) == 1:
                return RedirectResponse(url("subjects/0x" + found[0].hex()), 303)
            return render("search.html", q=q, found=["0x" + s.hex() for s in found], what="controller")
        m = _HEX64.fullmatch(q)
        if m is None:
            raise ExplorerError(
                400, "search takes a subject id, an event digest, a subject id/key id, or a controller address"
            )
        value = bytes.fromhex(m.group(1))
        if registry.state(value) is not None:  # a subject id is its inception's digest
            return RedirectResponse(url("subjects/0x" + value.hex()), 303)
        owner = await anyio.to_thread.run_sync(_by_head, value)
        if owner is not None:
            return RedirectResponse(url("subjects/0x" + owner.hex(), events="head"), 303)
        return render("search.html", 404, q=q, found=[], what="digest")

    def _by_controller(addr: bytes) -> list[bytes]:
        """Subjects whose current controller set holds addr (a scan: bounded by the results cap)."""
        out = []
        for sid, state in list(registry.states.items()):
            if addr in state.controllers:
                out.append(sid)
                if len(out) >= cfg.search_results:
                    break
        return out

    def _by_head(digest: bytes) -> bytes | None:
        """The subject whose head event has this digest (digests of older events: by subject id)."""
        for sid, state in list(registry.states.items()):
            if state.head == digest:
                return sid
        return None

    async def subject_page(request: Request) -> Response:
        sid = parse_sid(request.path_params["subject"])
        at = parse_time(request.query_params.get("at"))
        span = request.query_params.get("range") or None
        if span is not None and span not in timeline.RANGES and span != "all":
            raise ExplorerError(400, f"range is one of all, {', '.join(timeline.RANGES)}")
        at_head = request.query_params.get("events") == "head"  # a search by head digest lands here
        raw_page = request.query_params.get("page", "")
        cer = data.ceremonies(ctx, sid, limit=cfg.ceremonies_per_page)  # the book is read on the event loop only
        ceremonies = [] if cer is None else cer[0]

        def build() -> HTMLResponse:
            """The whole page in one worker thread: its store reads, rows, SVG and HTML."""
            view = data.subject(ctx, sid, at)
            if view is None:
                raise ExplorerError(404, f"no subject 0x{sid.hex()} is known to this node")
            per = cfg.events_per_page
            last_page = view["seq"] // per
            pg = last_page if at_head else _int_param(raw_page, "page", 0, last_page)
            raw, more = data.events_page(ctx, sid, pg * per, per)
            rows = data.event_rows(ctx, raw, view["anchor"])
            evidence = data.duplicity(ctx, sid) if view["disputed"] else []
            props = data.proposals(ctx, subject="0x" + sid.hex()) or []
            svg = timeline.render(
                view, int(registry.clock()), None if span == "all" else span, cfg.max_lanes, url("proposals")
            )
            return render(
                "subject.html", view=view, svg=svg, rows=rows, page=pg, last_page=last_page, more=more,
                span=span or "all", ranges=["all", *timeline.RANGES], evidence=evidence, proposals=props,
                ceremonies=ceremonies, lanes_hidden=max(0, len(view["keys"]) - cfg.max_lanes),
            )  # fmt: skip

        response: HTMLResponse = await anyio.to_thread.run_sync(build)
        return response

    async def key_page(request: Request) -> Response:
        q = request.query_params
        raw_sid, kid = q.get("subject", "").strip(), q.get("key", "").strip()
        if not raw_sid and not kid:
            return render("key.html", form=dict(q), verdict=None)
        sid = parse_sid(raw_sid)
        if not _KID.fullmatch(kid):
            raise ExplorerError(400, "a key id is 1-64 of [A-Za-z0-9._:-]")
        at = parse_time(q.get("at", "").strip())
        purpose = q.get("purpose", "").strip() or None
        if purpose is not None and not (
            len(purpose) <= ctx.config.limits.max_purpose_chars and _PURPOSE.fullmatch(purpose)
        ):
            raise ExplorerError(400, f"a purpose is 1-{ctx.config.limits.max_purpose_chars} of [a-z0-9._:-]")
        verdict = data.key_verdict(ctx, sid, kid, at, purpose)
        at = verdict["at"]  # "now" pinned: the link and the commands reproduce this very verdict
        state = registry.state(sid)
        rec = state.keys.get(kid) if state is not None else None
        sid_hex = "0x" + sid.hex()
        api_path = f"/v1/subjects/{sid_hex}/keys/{kid}"
        api_q = urlencode({k: v for k, v in (("at", at), ("purpose", purpose)) if v is not None})
        origin = f"{request.url.scheme}://{request.url.netloc}"
        cli = f"keyreg keys check {kid} --subject {sid_hex} --node {origin}"
        cli += f" --at {at}"
        if purpose:
            cli += f" --purpose {purpose}"
        return render(
            "key.html", form={"subject": sid_hex, "key": kid, "at": q.get("at", ""), "purpose": purpose or ""},
            verdict=verdict, explanation=_explain(verdict, None if rec is None else rec.published_seq), sid=sid_hex,
            link=url("keys", subject=sid_hex, key=kid, at=at, purpose=purpose),
            curl=f"curl '{origin}{api_path}" + (f"?{api_q}'" if api_q else "'"), cli=cli,
        )  # fmt: skip

    async def proposals_page(request: Request) -> Response:
        props = data.proposals(ctx)
        return render("proposals.html", proposals=props or [], gov_on=props is not None)

    async def proposal_page(request: Request) -> Response:
        pid = _proposal_id(request.path_params["pid"])
        governor = request.query_params.get("governor") or None
        if governor is not None and not _ADDRESS.fullmatch(governor):
            raise ExplorerError(400, "governor is an address (0x + 40 hex digits)")
        if data.gov(ctx) is None:
            raise ExplorerError(503, "governance is off on this node: it needs [chain] rpc_url")
        p = data.proposal(ctx, pid, governor)
        if p is None:
            raise ExplorerError(404, f"no proposal {pid} is known to this node")
        svc = data.gov(ctx)
        dao = svc.indexer.dao(p["governor"]) if svc is not None else None
        total = sum(p["votes"].values())
        cli = (
            f"keyreg gov vote {p['proposalId']} --support for --by-sig --submit --governor {p['governor']} "
            f"--node {request.url.scheme}://{request.url.netloc} --key-file member.json"
        )
        return render(
            "proposal.html", p=p, dao=dao, total=total, cli=cli,
            ballot_url=url(f"proposals/{p['proposalId']}/ballot.json"), open=p["state"] == "Active",
        )  # fmt: skip

    async def ballot_typed_data(request: Request) -> Response:
        """The EIP-712 ballot a wallet signs (eth_signTypedData_v4), and the wire ballot minus its
        signature: the page needs no Ethereum library. JSON errors, like the API's."""
        from ..api.middleware import client_key

        def err(status: int, code: str, message: str) -> Response:
            return JSONResponse({"code": code, "message": message}, status_code=status)

        try:
            pid = _proposal_id(request.path_params["pid"])
        except ExplorerError as exc:
            return err(404, "malformed_id", exc.message)
        q = request.query_params
        governor, voter, support = q.get("governor", ""), q.get("voter", ""), q.get("support", "")
        if not _ADDRESS.fullmatch(governor) or not _ADDRESS.fullmatch(voter):
            return err(400, "bad_query", "governor and voter are addresses (0x + 40 hex digits)")
        code = SUPPORT.get(support) if not support.isdigit() else int(support) if support in ("0", "1", "2") else None
        if code is None:
            return err(400, "bad_query", "support is for, against or abstain")
        svc = data.gov(ctx)
        if svc is None:
            return err(503, "gov_unavailable", "governance is off on this node: it needs [chain] rpc_url")
        dao = svc.indexer.dao(governor)
        client = svc.indexer.governors.get(governor.lower())
        if dao is None or client is None or svc.indexer.get(pid, governor) is None:
            return err(404, "not_found", f"no proposal {pid} of a DAO this node indexes")
        if not nonce_reads.take(client_key(request.scope)):
            return err(429, "rate_limited", "too many ballot requests from this client; retry later")
        try:
            nonce = await anyio.to_thread.run_sync(client.nonce, voter)
        except KeyregError as exc:  # ChainError and its kind: the RPC endpoint is down or refused
            return err(503, "chain", f"cannot read the voter's nonce: {exc.message}")
        typed, ballot = ballot_to_sign(ctx.config.network.chain_id, governor, dao.name, pid, code, voter, nonce)
        return JSONResponse({"typedData": typed, "ballot": ballot, "support": SUPPORT_NAMES[code]})

    # ------------------------------------------------------------------ ceremonies (page 6)

    async def ceremonies_page(request: Request) -> Response:
        raw = request.query_params.get("subject", "").strip()
        sid = parse_sid(raw) if raw else None
        per = cfg.ceremonies_per_page
        pg = _int_param(request.query_params.get("page", ""), "page", 0, ctx.config.proposals.max_pending)
        got = data.ceremonies(ctx, sid, pg * per, per)
        props, total = got if got is not None else ([], 0)
        rows = [{**p, "summary": data.describe(ctx, p)["summary"]} for p in props]
        return render(
            "ceremonies.html", rows=rows, enabled=got is not None, subject=None if sid is None else "0x" + sid.hex(),
            known=sid is None or registry.state(sid) is not None, page=pg, total=total,
            more=(pg + 1) * per < total, per=per,
        )  # fmt: skip

    async def ceremony_page(request: Request) -> Response:
        pid = _ceremony_id(request.path_params["pid"])
        p = data.ceremony(ctx, pid)
        if p is None:
            raise ExplorerError(
                404,
                f"this node holds no pending proposal 0x{pid.hex()}: it expired, was never made here, or the node "
                "restarted (proposals live on the node that was given them and are never gossiped)",
            )
        may = [a for a in p["authority"]["signers"] if a not in set(p["signers"])]  # who still may sign
        origin = f"{request.url.scheme}://{request.url.netloc}"
        pid_hex = p["id"]
        cli = (
            f"keyreg event fetch {pid_hex} --node {origin} --out proposal.json\n"
            "keyreg event sign proposal.json --key-file my-key.json\n"
            f"keyreg event share proposal.json --node {origin}"
        )
        cast = (
            f"keyreg event fetch {pid_hex} --node {origin} --out proposal.json\n"
            "keyreg event typed-data proposal.json > typed.json\n"
            "cast wallet sign --data --from-file typed.json --ledger   # or --trezor, or --keystore FILE\n"
            "keyreg event attach proposal.json --signature 0x<the signature cast printed>\n"
            f"keyreg event share proposal.json --node {origin}"
        )
        return render(
            "ceremony.html", p=p, what=data.describe(ctx, p), may=may,
            cli=cli, cast=cast, typed_url=url(f"ceremonies/{pid_hex}/typed-data.json"),
            open=not p["complete"] and not p["stale"] and p["submitted"] is None,
        )  # fmt: skip

    async def ceremony_typed_data(request: Request) -> Response:
        """The event's EIP-712 typed data, what a wallet signs (``eth_signTypedData_v4``) and what
        ``cast wallet sign --data --from-file`` takes. JSON errors, like the API's."""
        try:
            pid = _ceremony_id(request.path_params["pid"])
        except ExplorerError as exc:
            return JSONResponse({"code": "malformed_id", "message": exc.message}, status_code=404)
        p = data.ceremony(ctx, pid)
        if p is None:
            return JSONResponse(
                {"code": "not_found", "message": f"no pending proposal 0x{pid.hex()} on this node"}, status_code=404
            )
        return JSONResponse(data.ceremony_typed_data(ctx, p))

    async def anchors_page(request: Request) -> Response:
        health = data.health(ctx)
        chain = health["services"].get("chain") or {}
        ballots = data.ballots(ctx, 10)
        return render("anchors.html", chain=chain, ballots=ballots)

    async def static(request: Request) -> Response:
        item = STATIC.get(request.path_params["name"])
        if item is None:
            raise ExplorerError(404, "no such asset")
        body, ctype, digest = item
        etag = f'"{digest}"'
        headers = {"etag": etag, "cache-control": "public, max-age=86400"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=ctype, headers=headers)

    return [
        Route(base + "/", page(overview)),
        Route(url("search"), page(search)),
        Route(url("subjects/{subject}"), page(subject_page)),
        Route(url("keys"), page(key_page)),
        Route(url("proposals"), page(proposals_page)),
        Route(url("proposals/{pid}"), page(proposal_page)),
        Route(url("proposals/{pid}/ballot.json"), ballot_typed_data),
        Route(url("ceremonies"), page(ceremonies_page)),
        Route(url("ceremonies/{pid}"), page(ceremony_page)),
        Route(url("ceremonies/{pid}/typed-data.json"), ceremony_typed_data),
        Route(url("anchors"), page(anchors_page)),
        Route(url("static/{name}"), page(static)),
    ]


def ballot_to_sign(
    chain_id: int, governor: str, name: str, pid: int, support: int, voter: str, nonce: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ballot's EIP-712 typed data for ``eth_signTypedData_v4`` and its wire form without the
    signature (keyreg.gov.ballots): the signature over the first completes the second."""
    governor, voter = governor.lower(), voter.lower()
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Ballot": [
                {"name": "proposalId", "type": "uint256"},
                {"name": "support", "type": "uint8"},
                {"name": "voter", "type": "address"},
                {"name": "nonce", "type": "uint256"},
            ],
        },
        "primaryType": "Ballot",
        "domain": {"name": name, "version": "1", "chainId": chain_id, "verifyingContract": governor},
        # uint256 values as decimal strings: JSON numbers lose precision past 2**53.
        "message": {"proposalId": str(pid), "support": support, "voter": voter, "nonce": str(nonce)},
    }
    ballot = {
        "type": "keyreg.ballot", "v": 1, "chainId": chain_id, "governor": governor, "governorName": name,
        "proposalId": str(pid), "support": support, "voter": voter, "nonce": nonce,
    }  # fmt: skip
    return typed, ballot


def _proposal_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 78 or int(raw) >= 2**256:
        raise ExplorerError(404, "a proposal id is a decimal uint256")
    return int(raw)


def _ceremony_id(raw: str) -> bytes:
    """A ceremony's id: its event's EIP-712 digest, 0x + 64 hex digits."""
    m = _HEX64.fullmatch(raw)
    if m is None:
        raise ExplorerError(404, "a proposal id is its event's digest: 0x + 64 hex digits")
    return bytes.fromhex(m.group(1))


def _explain(v: dict[str, Any], published_seq: int | None = None) -> str:
    """The verdict in words, with the facts it rests on."""
    status, key = v["status"], v.get("key")
    if status == "valid" and key:
        end = f", not after {data.fmt_time(key['notAfter'])}" if key["notAfter"] else ", with no end date"
        where = f" in seq {published_seq}" if published_seq is not None else ""
        return f"valid: published{where}, valid from {data.fmt_time(key['validFrom'])}{end}"
    if status == "revoked" and v.get("revoked"):
        r = v["revoked"]
        who = "the controllers" if r["by"] == "controller" else f"governance (proposal {r['proposalId']})"
        where = f" in seq {r['seq']}" if r.get("seq") is not None else ""
        what = "the whole subject" if r["wholeSubject"] else "the key"
        return f"revoked: {what} was revoked by {who}{where}, effective {data.fmt_time(r['since'])}"
    if status == "not-yet-valid" and key:
        return f"not yet valid: valid from {data.fmt_time(key['validFrom'])}"
    if status == "expired" and key:
        return f"expired: not after {data.fmt_time(key['notAfter'])}"
    return f"{status}: {v['reason']}"
