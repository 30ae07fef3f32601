"""The anchoring service against a real anvil: batch roots every epoch, direct anchors on request,
a durable queue, and retries while the RPC endpoint is down."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from node_chain import OTHER_KEY, RELAYER_KEY, Subject, deploy, domain_for, node_registry, private_anvil, wait_for

from keyreg.chain.anchoring import AnchorQueue, direct_inputs, enqueue_direct
from keyreg.chain.client import ChainClient
from keyreg.chain.deploy import AnvilProcess, start_anvil
from keyreg.chain.service import ChainService
from keyreg.config import ChainConfig, Config, NetworkConfig
from keyreg.core.merkle import verify_proof

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilProcess]:
    with private_anvil() as a:
        yield a


def make_config(tmp_path: Path, rpc_url: str, address: str, **chain: object) -> Config:
    defaults: dict[str, object] = {
        "rpc_url": rpc_url,
        "confirmations": 1,
        "poll_interval_s": 0.1,
        "rpc_timeout_s": 2.0,
        "anchor_epoch_s": 0.3,
        "anchor_epoch_events": 1000,
        "retry_max_s": 0.5,
    }
    defaults.update(chain)
    return Config(
        data_dir=tmp_path,
        network=NetworkConfig(chain_id=31337, registry=address),
        chain=ChainConfig(**defaults),  # type: ignore[arg-type]
    )


def mine(anvil: AnvilProcess) -> bool:
    """Mine one block so that anchors reach their confirmation; returns False for use in wait_for."""
    anvil.rpc("evm_mine")
    return False


def anchors_of(registry, subject: bytes, mode: str) -> list:  # type: ignore[no-untyped-def]
    return [a for a in registry.store.anchors(subject) if a.mode == mode]


def test_batch_then_direct(anvil: AnvilProcess, tmp_path: Path) -> None:
    address = deploy(anvil)
    registry = node_registry(address)
    now = int(time.time())
    s = Subject(domain_for(address))
    events = [s.incept(1, now), s.update(now, "k1"), s.rotate(now)]
    assert all(r.status == "accepted" for r in registry.ingest(events))
    service = ChainService(registry, make_config(tmp_path, anvil.url, address), RELAYER_KEY)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            # one batch root covers the new heads; the watcher maps it back to them
            await wait_for(
                lambda: bool(anchors_of(registry, s.id, "batch")) or mine(anvil), what="a batch anchor of the head"
            )
            batch = anchors_of(registry, s.id, "batch")[0]
            assert (batch.seq, batch.digest) == (2, s.head)
            assert batch.root is not None
            last = service.anchoring.queue.state.last_batch
            assert last is not None
            assert last["root"] == "0x" + batch.root.hex()
            # the node's tree still has that root (no new events), so its proof checks against it
            assert verify_proof(batch.root, s.id, 2, s.head, registry.tree.prove(s.id))
            # a direct anchor relays all three signed events; the contract checks the signatures
            service.anchoring.request_direct(s.id)
            await wait_for(lambda: bool(anchors_of(registry, s.id, "direct")) or mine(anvil), what="direct anchors")
            await wait_for(lambda: len(anchors_of(registry, s.id, "direct")) == 3 or mine(anvil), what="3 heads")
            assert await service.client.head_of(s.id) == (2, s.head)
            assert service.anchoring.queue.state.results[-1]["status"] == "anchored"
            assert service.status()["queue_depth"] == 0
            # asking again is a no-op
            service.anchoring.request_direct(s.id)
            await wait_for(lambda: service.anchoring.queue.state.results[-1]["status"] == "already")
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_requests_from_another_process_survive_restart(anvil: AnvilProcess, tmp_path: Path) -> None:
    """A CLI drops a request file; the queue persists it; a new service instance finishes it."""
    address = deploy(anvil)
    registry = node_registry(address)
    now = int(time.time())
    s = Subject(domain_for(address))
    registry.ingest([s.incept(2, now), s.update(now, "k1")])
    config = make_config(tmp_path, anvil.url, address, anchor_epoch_s=3600.0)
    request_id = enqueue_direct(tmp_path, s.id)
    queue = AnchorQueue(tmp_path)
    assert queue.pick_up_requests() == 1
    assert [r.id for r in AnchorQueue(tmp_path).state.direct] == [request_id]  # durable before done
    service = ChainService(registry, config, RELAYER_KEY)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await wait_for(lambda: not service.anchoring.queue.state.direct, what="the queued request to finish")
            nursery.cancel_scope.cancel()

    trio.run(main)
    saved = json.loads((tmp_path / "chain" / "anchoring.json").read_text())
    assert saved["direct"] == []
    assert saved["results"][-1]["id"] == request_id
    assert saved["results"][-1]["status"] == "anchored"


def test_conflict_and_forgery_are_refused(anvil: AnvilProcess, tmp_path: Path) -> None:
    """The chain holds another event at a seq: the relayer refuses. A forged event reverts on-chain."""
    address = deploy(anvil)
    now = int(time.time())
    s = Subject(domain_for(address))
    inc, upd = s.incept(3, now), s.update(now, "k1")
    client = ChainClient(anvil.url, address, relayer_key=RELAYER_KEY, timeout_s=5)
    # somebody anchored seq 1 = a different (but validly signed) update
    fork = Subject(domain_for(address), secrets=s.secrets, events=[inc])
    other = fork.update(now, "k-other")

    async def main() -> None:
        tx = await client.anchor_events(direct_inputs([inc, other], 0))
        await client.wait_receipt(tx, 0.05, 10)
        registry = node_registry(address)
        registry.ingest([inc, upd])
        service = ChainService(registry, make_config(tmp_path, anvil.url, address, anchor_epoch_s=3600.0), RELAYER_KEY)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            service.anchoring.request_direct(s.id)
            await wait_for(lambda: bool(service.anchoring.queue.state.results), what="the request result")
            result = service.anchoring.queue.state.results[-1]
            assert result["status"] == "refused"
            assert result["error"]["code"] == "anchor_refused"
            assert "conflict" in result["error"]["message"]
            nursery.cancel_scope.cancel()
        # a cheating relayer forges seq 2 (timestamp changed after signing): the contract refuses
        forged_event = s.update(now, "k2")
        tampered = type(forged_event)(
            event=type(forged_event.event)(**{**_fields(forged_event.event), "timestamp": now + 1}),
            signatures=forged_event.signatures,
            domain=forged_event.domain,
        )
        from keyreg.chain.client import TransactionReverted

        with pytest.raises(TransactionReverted) as err:
            await client.anchor_events(direct_inputs([inc, other, tampered], 2))
        assert err.value.details["error"] in ("NotAController", "WrongPrev")
        # sent anyway with a fixed gas limit, it is mined and reverts
        tx = await client.anchor_events(direct_inputs([inc, other, tampered], 2), gas=500_000)
        with pytest.raises(TransactionReverted):
            await client.wait_receipt(tx, 0.05, 10)

    trio.run(main)


def _fields(event: object) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__slots__ if name != "kind"}  # type: ignore[attr-defined]


def dumped_block(state_file: Path) -> int:
    """The newest block in anvil's --state file (-1 while absent or half written)."""
    try:
        best = json.loads(state_file.read_text())["best_block_number"]
    except (OSError, ValueError, KeyError):
        return -1
    return int(best, 16) if isinstance(best, str) else int(best)


def test_rpc_down_keeps_work_and_recovers(tmp_path: Path) -> None:
    """anvil killed: status says down, the queue keeps the work; restarted from its state file: drained."""
    state_file = tmp_path / "anvil-state.json"
    with private_anvil("--state", str(state_file), "--state-interval", "1") as first:
        port = first.port
        address = deploy(first)
        registry = node_registry(address)
        now = int(time.time())
        s = Subject(domain_for(address))
        registry.ingest([s.incept(4, now)])
        config = make_config(tmp_path / "node", first.url, address, confirmations=0, anchor_epoch_s=0.2)
        service = ChainService(registry, config, RELAYER_KEY)
        anvil_ref: list[AnvilProcess] = [first]

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                await nursery.start(service.run)
                await wait_for(lambda: bool(anchors_of(registry, s.id, "batch")), what="the first batch")
                # let the state file (dumped every second) catch up with the batch block, then kill anvil
                block = anchors_of(registry, s.id, "batch")[0].block_number
                await wait_for(lambda: dumped_block(state_file) >= block, what="the state file to hold the batch")
                first.stop()
                registry.ingest([s.update(now, "k1")])
                service.anchoring.request_direct(s.id)
                await wait_for(lambda: service.status()["rpc"] == "down", what="rpc down in status")
                st = service.status()
                assert st["queue_depth"] >= 2
                assert st["last_error"]
                second = start_anvil(port=port, extra_args=["--state", str(state_file), "--state-interval", "1"])
                anvil_ref.append(second)
                await wait_for(
                    lambda: service.status()["rpc"] == "ok" and service.status()["queue_depth"] == 0,
                    timeout=30,
                    what="recovery and a drained queue",
                )
                assert service.anchoring.queue.state.results[-1]["status"] == "anchored"
                assert len(anchors_of(registry, s.id, "direct")) >= 2
                nursery.cancel_scope.cancel()

        try:
            trio.run(main)
        finally:
            for a in anvil_ref[1:]:
                a.stop()


def test_anchor_status_compares_the_chain_with_the_local_log() -> None:
    """No chain needed: anchors are recorded by hand."""
    from keyreg.chain.status import anchor_status
    from keyreg.store.base import AnchorRecord

    address = "0x" + "42" * 20
    registry = node_registry(address)
    now = int(time.time())
    s = Subject(domain_for(address))
    registry.ingest([s.incept(5, now), s.update(now, "k1")])
    assert anchor_status(registry, s.id)["status"] == "unanchored"

    def record(seq: int, digest: bytes, block: int, mode: str = "direct") -> None:
        registry.record_anchors([AnchorRecord(s.id, seq, digest, block * 1_000_000, mode, block, b"\x01" * 32)])

    record(0, s.id, 10)
    st = anchor_status(registry, s.id)
    assert (st["status"], st["seq"], st["mode"]) == ("ahead", 0, "direct")
    record(1, s.head, 11, "batch")
    st = anchor_status(registry, s.id)
    assert (st["status"], st["mode"], st["batch"]["seq"], st["direct"]["seq"]) == ("equal", "batch", 1, 0)
    record(2, b"\x07" * 32, 12)
    assert anchor_status(registry, s.id)["status"] == "behind"
    other = node_registry(address)
    other.ingest([s.events[0], Subject(domain_for(address), secrets=s.secrets, events=[s.events[0]]).update(now, "x")])
    other.record_anchors([AnchorRecord(s.id, 1, s.head, 11_000_000, "direct", 11, b"\x01" * 32)])
    assert anchor_status(other, s.id)["status"] == "conflict"


def test_watch_only_node_refuses_direct_requests(anvil: AnvilProcess, tmp_path: Path) -> None:
    address = deploy(anvil)
    registry = node_registry(address)
    s = Subject(domain_for(address))
    registry.ingest([s.incept(6, int(time.time()))])
    service = ChainService(registry, make_config(tmp_path, anvil.url, address), relayer_key=None)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            service.anchoring.request_direct(s.id)
            await wait_for(lambda: bool(service.anchoring.queue.state.results), what="a refusal")
            assert service.anchoring.queue.state.results[-1]["error"]["code"] == "chain_no_relayer"
            assert service.status()["queue_depth"] == 0
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_own_authority_reductions_are_anchored_directly(anvil: AnvilProcess, tmp_path: Path) -> None:
    """ADR 0012: the node's own subject's rotation is anchored directly whoever submitted it (no CLI request),
    another subject's is left to batches (anyone could make this node pay for theirs), a plain update too."""
    address = deploy(anvil)
    registry = node_registry(address)
    now = int(time.time())
    own, other = Subject(domain_for(address)), Subject(domain_for(address))
    registry.ingest([own.incept(7, now), other.incept(8, now)])
    (tmp_path / "keystore").mkdir()
    (tmp_path / "keystore" / "keystore.json").write_text(json.dumps({"subject": "0x" + own.id.hex()}))
    config = make_config(tmp_path, anvil.url, address, anchor_epoch_s=3600.0)  # no batch root in this test
    service = ChainService(registry, config, RELAYER_KEY)
    anchoring = service.anchoring

    def results(status: str = "anchored") -> list[tuple[str, int]]:
        return [(r["subject"], r["seq"]) for r in anchoring.queue.state.results if r["status"] == status]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            # at start the own head is covered by no anchor: it is anchored directly (a restart must not
            # lose a reduction noted before it)
            await wait_for(lambda: results() == [("0x" + own.id.hex(), 0)], what="the own head anchored at start")
            await trio.to_thread.run_sync(registry.ingest, [own.update(now, "k1"), other.update(now, "k1")])
            assert not anchoring.reduction_pending  # publishing keys reduces nothing
            await trio.to_thread.run_sync(registry.ingest, [other.rotate(now)])
            assert not anchoring.reduction_pending  # not our subject: never paid for by this node
            await trio.to_thread.run_sync(registry.ingest, [own.rotate(now)])
            await wait_for(
                lambda: ("0x" + own.id.hex(), 2) in results(), what="the automatic direct anchor of the own rotation"
            )
            assert await service.client.head_of(own.id) == (2, own.head)
            assert (await service.client.head_of(other.id))[1] == b"\x00" * 32  # never anchored directly
            assert all(subject == "0x" + own.id.hex() for subject, _ in results())
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_direct_anchor_that_loses_the_race_to_another_relayer_is_already(anvil: AnvilProcess, tmp_path: Path) -> None:
    """Two relayers anchor the same signed heads in one block: the second transaction reverts on the
    seq it expected, and the chain holds exactly what it asked for. Its result is "already", not
    "refused" (the recovery rehearsal saw a false refusal when a subject's two nodes both relayed)."""
    address = deploy(anvil)
    now = int(time.time())
    s = Subject(domain_for(address))
    events = [s.incept(1, now), s.update(now, "k1")]
    registries = [node_registry(address), node_registry(address)]
    for registry in registries:
        assert all(r.status == "accepted" for r in registry.ingest(events))
    services = [
        ChainService(registries[0], make_config(tmp_path / "a", anvil.url, address), RELAYER_KEY),
        ChainService(registries[1], make_config(tmp_path / "b", anvil.url, address), OTHER_KEY),
    ]
    results: list[dict[str, object]] = []

    async def relay(service: ChainService) -> None:
        results.append(await service.anchoring.anchor_direct(s.id))

    async def main() -> None:
        anvil.rpc("evm_setAutomine", False)
        try:
            async with trio.open_nursery() as nursery:
                for service in services:
                    nursery.start_soon(relay, service)
                # both transactions wait in the pool, then one block mines them in turn
                await wait_for(lambda: int(anvil.rpc("txpool_status")["pending"], 16) == 2, what="two pending txs")
                anvil.rpc("evm_mine")
                await wait_for(lambda: len(results) == 2 or mine(anvil), what="both relayers' results")
        finally:
            anvil.rpc("evm_setAutomine", True)

    trio.run(main)
    assert sorted(r["status"] for r in results) == ["already", "anchored"]
    assert all(r["seq"] == 1 and r["digest"] == "0x" + s.head.hex() for r in results)
