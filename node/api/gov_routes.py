"""Governance routes of the public API (mounted by keyreg.api.app.create_app).

- ``GET  /v1/gov/proposals?governor=&subject=&state=``  proposals of the DAOs subjects named, newest
  first, with state, tallies (for/against/abstain), quorum, voters, and the revocations applied
- ``GET  /v1/gov/proposals/{proposalId}?governor=``     one proposal
- ``GET  /v1/gov/daos/{address}``                      a recognised DAO (governor or executor address)
  and its current members, from its token's MemberAdded/MemberRemoved logs
- ``POST /v1/gov/ballots``                              a signed ballot (keyreg.gov.ballots wire format):
  validated, deduplicated, relayed with castVoteBySig and gossiped; answers 202 with its relay record
- ``GET  /v1/gov/ballots``                              the relay records of this node (newest first)
- ``GET  /v1/gov/ballots/{id}``                         one record; id = governor:proposalId:voter

Errors use the API's {"code", "message"} shape: ``ballot_rejected`` (400, or 409 for a duplicate),
``gov_unavailable`` (503: the node runs without ``[chain] rpc_url``), ``not_found`` (404).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from itertools import islice

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..gov.ballots import MAX_BALLOT_BYTES
from ..gov.errors import BallotRejected
from ..gov.service import GovService
from ..gov.tx import STATES
from .handling import ApiError, int_query, read_body
from .middleware import client_key

# Filters that can match something: anything else is a 400 (never echoed), not an empty list.
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_SUBJECT_RE = re.compile(r"0x[0-9a-fA-F]{64}")
_STATES = {s.lower() for s in STATES}
_PROPOSAL_ID_RE = re.compile(r"[0-9]{1,78}")  # ASCII only: str.isdigit() takes other scripts' digits
_BALLOT_ID_RE = re.compile(r"0x[0-9a-f]{40}:[0-9]{1,78}:0x[0-9a-f]{40}")
_UINT256_MAX = 2**256 - 1


def routes(gov: Callable[[], GovService | None]) -> list[Route]:
    """The governance routes; ``gov()`` is the running governance service, or None when it is off."""

    def service() -> GovService:
        svc = gov()
        if svc is None:
            raise ApiError(503, "gov_unavailable", "governance is off on this node: it needs [chain] rpc_url")
        return svc

    def proposal_id(raw: str) -> int:
        if _PROPOSAL_ID_RE.fullmatch(raw) is None or int(raw) > _UINT256_MAX:
            raise ApiError(404, "malformed_id", "a proposal id is a decimal uint256")
        return int(raw)

    def governor_query(q: Mapping[str, str]) -> str | None:
        governor = q.get("governor") or None
        if governor is not None and _ADDRESS_RE.fullmatch(governor) is None:
            raise ApiError(400, "bad_query", "query parameter 'governor' must be an address (0x + 40 hex digits)")
        return governor

    async def list_proposals(request: Request) -> Response:
        q = request.query_params
        governor = governor_query(q)
        subject, state = q.get("subject") or None, q.get("state") or None
        if subject is not None and _SUBJECT_RE.fullmatch(subject) is None:
            raise ApiError(400, "bad_query", "query parameter 'subject' must be 0x + 64 hex digits")
        if state is not None and state.lower() not in _STATES:
            raise ApiError(400, "bad_query", f"query parameter 'state' must be one of {', '.join(STATES)}")
        svc = service()
        items = svc.indexer.list(governor, subject, state)
        return JSONResponse({"proposals": items, "indexer": svc.indexer.status()})

    async def get_proposal(request: Request) -> Response:
        pid = proposal_id(request.path_params["pid"])
        governor = governor_query(request.query_params)
        svc = service()
        item = svc.indexer.get(pid, governor)
        if item is None:
            raise ApiError(404, "not_found", f"no proposal {pid} is known to this node")
        return JSONResponse(item)

    async def get_dao(request: Request) -> Response:
        address = request.path_params["address"]
        if _ADDRESS_RE.fullmatch(address) is None:
            raise ApiError(404, "malformed_id", "a DAO is named by its governor or executor address")
        item = service().indexer.dao_info(address)
        if item is None:
            raise ApiError(404, "not_found", "no recognised DAO at this address is known to this node")
        return JSONResponse(item)

    async def post_ballot(request: Request) -> Response:
        svc = service()
        body = await read_body(request, 2 * MAX_BALLOT_BYTES)
        try:
            result = svc.relay.submit(body, "api", client=client_key(request.scope))
        except BallotRejected as exc:
            status = {"Duplicate": 409, "OverBudget": 429, "Busy": 429}.get(exc.details.get("error", ""), 400)
            return JSONResponse(exc.to_dict(), status_code=status)
        return JSONResponse(result.to_dict(), status_code=202)

    async def list_ballots(request: Request) -> Response:
        # Newest first, at most `limit` (the relay keeps up to 10,000 records).
        limit = int_query(request.query_params, "limit", 100, 1, 1000) or 100
        svc = service()
        items = [r.to_dict() for r in islice(reversed(svc.relay.results.values()), limit)]
        return JSONResponse({"ballots": items, "relay": svc.relay.status()})

    async def get_ballot(request: Request) -> Response:
        rid = request.path_params["rid"].lower()
        if _BALLOT_ID_RE.fullmatch(rid) is None:
            raise ApiError(404, "malformed_id", "a ballot id is governor:proposalId:voter (0x addresses)")
        svc = service()
        result = svc.relay.result(rid)
        if result is None:
            raise ApiError(404, "not_found", f"no ballot {rid} was received by this node")
        return JSONResponse(result.to_dict())

    return [
        Route("/v1/gov/proposals", list_proposals),
        Route("/v1/gov/proposals/{pid}", get_proposal),
        Route("/v1/gov/daos/{address}", get_dao),
        Route("/v1/gov/ballots", post_ballot, methods=["POST"]),
        Route("/v1/gov/ballots", list_ballots, methods=["GET"]),
        Route("/v1/gov/ballots/{rid}", get_ballot),
    ]
