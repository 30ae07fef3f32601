"""Issue 13 review M3: every RPC call has a total deadline, a byte cap on its answer, and the process
a cap on calls in flight; against real HTTP servers on loopback that trickle or flood.

At 43df08f requests' ``timeout`` bounded each socket read only: an endpoint sending one byte per
read held a call (and its worker thread) for as long as it liked (40 s in the review), a cancelled
call's thread kept running, and an answer had no size bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import trio
from node_chain import wait_for
from rpc_servers import BigAnswerEndpoint, TricklingEndpoint

from keyreg.chain.client import ChainClient, ChainUnavailable, rpc_calls_in_flight
from keyreg.core.errors import ChainError

REGISTRY = "0x" + "11" * 20
TIMEOUT_S = 1.0
HOLD_S = 30.0  # what the trickle would hold a per-read-timeout client for


@pytest.fixture(params=["head", "body"])
def trickling(request: pytest.FixtureRequest) -> Iterator[TricklingEndpoint]:
    endpoint = TricklingEndpoint(where=request.param, interval=TIMEOUT_S / 5, hold_s=HOLD_S)
    try:
        yield endpoint
    finally:
        endpoint.close()


def test_a_trickling_endpoint_is_cut_at_the_total_deadline(trickling: TricklingEndpoint) -> None:
    url = trickling.url.replace("http://", "http://operator:hunter2@") + "/v3/SECRETAPIKEY"
    client = ChainClient(url, REGISTRY, timeout_s=TIMEOUT_S)

    async def main() -> None:
        t0 = time.monotonic()
        with pytest.raises(ChainUnavailable) as info:
            await client.block_number()
        elapsed = time.monotonic() - t0
        # One byte every TIMEOUT_S / 5 never trips a per-read timeout: without a total deadline
        # the call lasts HOLD_S. The margin is for a loaded machine, far below HOLD_S.
        assert elapsed < HOLD_S / 3, elapsed
        assert f"within {TIMEOUT_S:g}s" in info.value.message
        assert "hunter2" not in info.value.message
        assert "SECRETAPIKEY" not in info.value.message

    trio.run(main)
    assert (trickling.auth[0] or "").startswith("Basic ")  # the URL's user info is sent as auth
    assert rpc_calls_in_flight() == 0


def test_cancelled_calls_end_by_their_deadline_and_in_flight_calls_are_capped() -> None:
    endpoint = TricklingEndpoint(where="body", interval=TIMEOUT_S / 5, hold_s=HOLD_S)
    cap = 3
    client = ChainClient(endpoint.url, REGISTRY, timeout_s=TIMEOUT_S, read_concurrency=8, max_in_flight=cap)
    refused: list[str] = []

    async def one() -> None:
        try:
            await client.block_number()
        except ChainUnavailable as exc:
            refused.append(exc.message)

    async def main() -> None:
        # Eight calls, cancelled (abandoned to their threads) as soon as the endpoint holds some.
        with trio.move_on_after(HOLD_S):
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(one)
                await wait_for(lambda: endpoint.in_flight >= 1, what="the endpoint holding calls")
                nursery.cancel_scope.cancel()
        # The abandoned threads end by their own deadline, not when the endpoint lets go.
        await wait_for(lambda: rpc_calls_in_flight() == 0, timeout=HOLD_S / 3, what="abandoned calls to end")
        await wait_for(lambda: endpoint.in_flight == 0, timeout=HOLD_S / 3, what="the endpoint to see them go")

    try:
        trio.run(main)
        assert endpoint.max_in_flight <= cap
        # A second round, not cancelled: only `cap` reach the endpoint, the rest are refused at once.
        refused.clear()

        async def round_two() -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(6):
                    nursery.start_soon(one)

        trio.run(round_two)
        assert len(refused) == 6
        assert sum("in flight" in m for m in refused) >= 6 - cap
        assert endpoint.max_in_flight <= cap
        assert rpc_calls_in_flight() == 0
    finally:
        endpoint.close()


@pytest.mark.parametrize("chunked", [False, True])
def test_an_answer_over_the_byte_cap_is_refused(chunked: bool) -> None:
    endpoint = BigAnswerEndpoint(3 * 1024 * 1024, chunked=chunked)
    try:
        small = ChainClient(endpoint.url, REGISTRY, timeout_s=10, max_answer_bytes=1024 * 1024)
        big = ChainClient(endpoint.url, REGISTRY, timeout_s=10, max_answer_bytes=8 * 1024 * 1024)

        async def main() -> None:
            with pytest.raises(ChainError) as info:
                await small.block_number()
            assert "RPC answer refused" in info.value.message
            assert not isinstance(info.value, ChainUnavailable)
            assert await big.block_number() == 7  # the same answer under a larger cap

        trio.run(main)
    finally:
        endpoint.close()
