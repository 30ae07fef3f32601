"""ChainClient: typed, secret-free errors; custom-error decoding; nonce tracking and recovery."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio
from node_chain import OTHER_KEY, RELAYER_KEY, deploy, private_anvil

from keyreg.chain.client import (
    ChainClient,
    ChainUnavailable,
    NoRelayer,
    TransactionReverted,
    redact_url,
)
from keyreg.chain.deploy import AnvilProcess, free_port
from keyreg.core.errors import ChainError
from keyreg.core.hashing import keccak
from keyreg.core.records import ZERO32


def test_redact_url_keeps_only_scheme_host_port() -> None:
    assert redact_url("https://user:pw@rpc.example.org:8443/v3/SECRETKEY?apikey=X") == "https://rpc.example.org:8443"
    assert redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"


def test_unreachable_endpoint_is_chain_unavailable_without_secrets() -> None:
    url = f"http://user:hunter2@127.0.0.1:{free_port()}/v3/SECRETKEY"
    client = ChainClient(url, "0x" + "11" * 20, timeout_s=1, relayer_key=RELAYER_KEY)

    async def main() -> None:
        with pytest.raises(ChainUnavailable) as err:
            await client.block_number()
        assert isinstance(err.value, ChainError)
        text = str(err.value) + repr(err.value.to_dict())
        for secret in ("hunter2", "SECRETKEY", RELAYER_KEY.hex()):
            assert secret not in text
        with pytest.raises(ChainUnavailable):
            await client.anchor_batch(keccak(b"r"), 1)

    trio.run(main)


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilProcess]:
    with private_anvil() as a:
        yield a


@pytest.mark.anvil
def test_reverts_are_decoded_before_paying(anvil: AnvilProcess) -> None:
    client = ChainClient(anvil.url, deploy(anvil), relayer_key=RELAYER_KEY, timeout_s=5)

    async def main() -> None:
        with pytest.raises(TransactionReverted) as err:
            await client.anchor_batch(ZERO32, 1)
        assert err.value.details["error"] == "ZeroRoot"
        root = keccak(b"root")
        await client.wait_receipt(await client.anchor_batch(root, 3), 0.02, 10)
        with pytest.raises(TransactionReverted) as err:
            await client.anchor_batch(root, 3)
        assert err.value.details["error"] == "BatchExists"
        assert err.value.details["args"] == ["0x" + root.hex()]
        assert await client.batch_of(root) > 0
        [log] = await client.logs(0, await client.block_number())
        assert (log.name, log.args["root"], log.args["count"]) == ("BatchAnchored", root, 3)

    trio.run(main)


@pytest.mark.anvil
def test_watch_only_client_refuses_writes(anvil: AnvilProcess) -> None:
    client = ChainClient(anvil.url, deploy(anvil), timeout_s=5)

    async def main() -> None:
        assert client.relayer_address is None
        with pytest.raises(NoRelayer):
            await client.anchor_batch(keccak(b"x"), 1)

    trio.run(main)


@pytest.mark.anvil
def test_nonce_is_tracked_locally_and_recovers(anvil: AnvilProcess) -> None:
    address = deploy(anvil)
    client = ChainClient(anvil.url, address, relayer_key=OTHER_KEY, timeout_s=5)
    twin = ChainClient(anvil.url, address, relayer_key=OTHER_KEY, timeout_s=5)  # same account elsewhere

    async def main() -> None:
        hashes = [await client.anchor_batch(keccak(bytes([i])), 1) for i in range(3)]  # no receipt waits
        for h in hashes:
            await client.wait_receipt(h, 0.02, 10)
        await twin.wait_receipt(await twin.anchor_batch(keccak(b"twin"), 1), 0.02, 10)
        # our tracked nonce is now stale: the first send fails, the retry re-reads the nonce
        with pytest.raises(ChainError):
            await client.anchor_batch(keccak(b"after"), 1)
        await client.wait_receipt(await client.anchor_batch(keccak(b"after"), 1), 0.02, 10)

    trio.run(main)
