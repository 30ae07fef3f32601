"""Governance routes of the public API (mounted by node.api.app.create_app).

- ``GET  /v1/gov/proposals?governor=&subject=&state=``  proposals of the DAOs subjects named, newest
  first, with state, tallies (for/against/abstain), quorum, voters, and the revocations applied
- ``GET  /v1/gov/proposals/{proposalId}?governor=``     one proposal
- ``POST /v1/gov/ballots``                              a signed ballot (node.gov.ballots wire format):
  validated, deduplicated, relayed with castVoteBySig and gossiped; answers 202 with its relay record
- ``GET  /v1/gov/ballots``                              the relay records of this node (newest first)
- ``GET  /v1/gov/ballots/{id}``                         one record; id = governor:proposalId:voter

Errors use the API's {"code", "message"} shape: ``ballot_rejected`` (400, or 409 for a duplicate),
``gov_unavailable`` (503: the node runs without ``[chain] rpc_url``), ``not_found`` (404).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..gov.ballots import MAX_BALLOT_BYTES
from ..gov.errors import BallotRejected
from ..gov.service import GovService, service_for


def routes(ctx: Any) -> list[Route]:
    """The governance routes for one API context."""
    from .app import ApiError, read_body  # late: app.py imports this module

    def service() -> GovService:
        svc = service_for(ctx)
        if svc is None:
            raise ApiError(503, "gov_unavailable", "governance is off on this node: it needs [chain] rpc_url")
        return svc

    def proposal_id(raw: str) -> int:
        if not raw.isdigit() or len(raw) > 78:
            raise ApiError(404, "malformed_id", "a proposal id is a decimal uint256")
        return int(raw)

    async def list_proposals(request: Request) -> Response:
        svc = service()
        q = request.query_params
        items = svc.indexer.list(q.get("governor") or None, q.get("subject") or None, q.get("state") or None)
        return JSONResponse({"proposals": items, "indexer": svc.indexer.status()})

    async def get_proposal(request: Request) -> Response:
        svc = service()
        pid = proposal_id(request.path_params["pid"])
        item = svc.indexer.get(pid, request.query_params.get("governor") or None)
        if item is None:
            raise ApiError(404, "not_found", f"no proposal {pid} is known to this node")
        return JSONResponse(item)

    async def post_ballot(request: Request) -> Response:
        svc = service()
        body = await read_body(request, 2 * MAX_BALLOT_BYTES)
        try:
            result = svc.relay.submit(body, "api")
        except BallotRejected as exc:
            status = 409 if exc.details.get("error") == "Duplicate" else 400
            return JSONResponse(exc.to_dict(), status_code=status)
        return JSONResponse(result.to_dict(), status_code=202)

    async def list_ballots(request: Request) -> Response:
        svc = service()
        items = [r.to_dict() for r in reversed(list(svc.relay.results.values()))]
        return JSONResponse({"ballots": items, "relay": svc.relay.status()})

    async def get_ballot(request: Request) -> Response:
        svc = service()
        rid = request.path_params["rid"].lower()
        result = svc.relay.result(rid)
        if result is None:
            raise ApiError(404, "not_found", f"no ballot {rid} was received by this node")
        return JSONResponse(result.to_dict())

    return [
        Route("/v1/gov/proposals", list_proposals),
        Route("/v1/gov/proposals/{pid}", get_proposal),
        Route("/v1/gov/ballots", post_ballot, methods=["POST"]),
        Route("/v1/gov/ballots", list_ballots, methods=["GET"]),
        Route("/v1/gov/ballots/{rid}", get_ballot),
    ]
