"""Protocol v2 through the node's chain side on a real anvil: a direct anchor relays an
operator-signed update through the operator path, and when a rogue operator anchors its update
first, the controllers' competing event is relayed with ``supersede`` and the watcher moves the
node onto it (HeadReplaced)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from node_chain import RELAYER_KEY, deploy, domain_for, node_registry, private_anvil, wait_for
from test_anchoring import make_config, mine

from keyreg.chain import artifacts
from keyreg.chain.anchoring import direct_inputs
from keyreg.chain.client import ChainClient
from keyreg.chain.deploy import AnvilProcess, connect
from keyreg.chain.deploy import deploy as deploy_contract
from keyreg.chain.service import ChainService
from keyreg.core import builder
from keyreg.core.eip712 import event_digest, operator_commitment
from keyreg.core.hashing import address_of_private_key, keccak
from keyreg.core.records import NO_OPERATORS, Domain, PublishedKey, SignedEvent
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilProcess]:
    with private_anvil() as a:
        yield a


class OpSubject:
    """A 1-of-1 subject whose inception delegates updates to a 1-of-1 operator set."""

    def __init__(self, domain: Domain, seed: str, now: int) -> None:
        self.domain = domain
        self.controller = keccak(f"{seed}/c".encode())
        self.next = keccak(f"{seed}/n".encode())
        self.operator = keccak(f"{seed}/op".encode())
        self.operators = builder.operator_set([address_of_private_key(self.operator)], 1, ["sig"], 86_400, 4)
        inc = builder.inception(
            now, builder.controller_set([self.controller]), 1, builder.controller_set([self.next]), 1,
            keys=[PublishedKey("k0", "Ed25519", bytes(32), ("sig",), now, 0)], operators=self.operators,
        )  # fmt: skip
        self.inception = builder.sign_event(domain, inc, [self.controller])
        self.id = event_digest(domain, inc)

    def key(self, key_id: str, now: int, n: int) -> PublishedKey:
        return PublishedKey(key_id, "Ed25519", bytes([n]) * 32, ("sig",), now, now + 3_600)

    def op_update(self, seq: int, prev: bytes, now: int, key_id: str) -> SignedEvent:
        ev = builder.update(self.id, seq, prev, now, publish=[self.key(key_id, now, seq + 7)])
        return builder.sign_event(self.domain, ev, [self.operator])

    def digest(self, signed: SignedEvent) -> bytes:
        return event_digest(self.domain, signed.event)


def test_direct_anchor_relays_operator_updates(anvil: AnvilProcess, tmp_path: Path) -> None:
    address = deploy(anvil)
    registry = node_registry(address)
    now = int(time.time())
    s = OpSubject(domain_for(address), "relay", now)
    u1 = s.op_update(1, s.id, now, "svc-1")
    ctrl = builder.sign_event(
        s.domain, builder.update(s.id, 2, s.digest(u1), now, publish=[s.key("svc-2", now, 2)]), [s.controller]
    )
    u3 = s.op_update(3, s.digest(ctrl), now, "svc-3")
    events = [s.inception, u1, ctrl, u3]
    assert [r.status for r in registry.ingest(events)] == ["accepted"] * 4
    items = direct_inputs(events, 0, s.domain)
    assert [item[8] for item in items] == [False, True, False, True]  # byOperators read from the signatures
    service = ChainService(registry, make_config(tmp_path, anvil.url, address, anchor_epoch_s=3600.0), RELAYER_KEY)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            service.anchoring.request_direct(s.id)
            await wait_for(lambda: bool(service.anchoring.queue.state.results), what="the direct anchor")
            result = service.anchoring.queue.state.results[-1]
            assert result["status"] == "anchored", result
            assert await service.client.head_of(s.id) == (3, s.digest(u3))
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.parametrize("watcher_first", [False, True], ids=["controllers-local", "chain-first"])
def test_controllers_supersede_a_rogue_operator_head(anvil: AnvilProcess, tmp_path: Path, watcher_first: bool) -> None:
    """The node's operator key is stolen; the thief anchors a rogue update first. The controllers'
    delegation at the same seq (dropping the operators) is relayed with supersede, and every node's
    watcher follows the HeadReplaced to the controllers' event. chain-first: the node has already
    confirmed the rogue anchor (so it holds the rogue head, the chain decides) when the
    controllers' event arrives; controllers-local: it arrives before."""
    address = deploy(anvil)
    registry = node_registry(address)
    now = int(time.time())
    s = OpSubject(domain_for(address), "rogue", now)
    rogue = s.op_update(1, s.id, now, "rogue-key")
    fire = builder.sign_event(s.domain, builder.delegation(s.id, 1, s.id, now + 1, NO_OPERATORS), [s.controller])
    # The thief relays inception + rogue update straight to the contract (operator path).
    thief = ChainClient(anvil.url, address, relayer_key=RELAYER_KEY, timeout_s=5)

    async def thief_anchors() -> None:
        tx = await thief.anchor_events(direct_inputs([s.inception, rogue], 0, s.domain))
        await thief.wait_receipt(tx, 0.05, 10)

    trio.run(thief_anchors)
    assert registry.ingest([s.inception])[0].status == "accepted"
    registry.ingest([rogue])

    def ingest_fire() -> None:
        registry.ingest([fire])  # the controllers' competitor at seq 1: kept (as head or as evidence)
        held = {event_digest(s.domain, e.event) for e in registry.store.log(s.id)}
        held |= {d for e in registry.store.evidence(s.id) for d in (e.first_digest, e.second_digest)}
        assert {s.digest(rogue), s.digest(fire)} <= held

    if not watcher_first:
        ingest_fire()
    else:  # the node's own subject: its duplicity is anchored directly with no request
        (tmp_path / "keystore").mkdir()
        (tmp_path / "keystore" / "keystore.json").write_text(json.dumps({"subject": "0x" + s.id.hex()}))
    service = ChainService(registry, make_config(tmp_path, anvil.url, address, anchor_epoch_s=3600.0), RELAYER_KEY)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            if watcher_first:
                await wait_for(
                    lambda: any(a.seq == 1 for a in registry.store.anchors(s.id)) or mine(anvil),
                    what="the watcher to confirm the rogue anchor",
                )
                await trio.to_thread.run_sync(ingest_fire)
                state_then = registry.state(s.id)
                assert state_then is not None
                assert state_then.head == s.digest(rogue)  # the chain decides, until the controllers act
                await wait_for(
                    lambda: any(r["status"] == "superseded" for r in service.anchoring.queue.state.results),
                    what="the automatic supersede of the own subject's rogue head",
                )
            else:
                service.anchoring.request_direct(s.id)
                await wait_for(lambda: bool(service.anchoring.queue.state.results), what="the direct anchor")
                result = service.anchoring.queue.state.results[-1]
                assert result["status"] == "anchored", result
            assert await service.client.head_of(s.id) == (1, s.digest(fire))
            state = service.client.contract.functions.subjectState(s.id).call()
            assert state[8] is False  # byOperators
            assert bytes(state[9]) == bytes(32)  # the delegation dropped the operators
            assert operator_commitment(s.operators) != bytes(32)

            # The watcher confirms the HeadReplaced: the node's head becomes the controllers' event.
            def replaced() -> list[tuple[int, bytes]]:
                return [(a.seq, a.digest) for a in registry.store.anchors(s.id) if a.mode == "recovery"]

            await wait_for(lambda: bool(replaced()) or mine(anvil), what="the watcher to confirm HeadReplaced")
            assert replaced() == [(1, s.digest(fire))]
            state_now = registry.state(s.id)
            assert state_now is not None
            assert state_now.head == s.digest(fire)
            assert not state_now.operators
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.parametrize("contract", ["v1-domain", "not-a-registry"])
def test_node_refuses_a_registry_of_another_protocol(anvil: AnvilProcess, tmp_path: Path, contract: str) -> None:
    """A node speaks one protocol version: against a registry signing over another EIP-712 domain
    (as a v1 KeyRegistry does), or a contract that is no registry, it never becomes ready, so it
    neither anchors nor indexes, and says why."""
    if contract == "v1-domain":
        address = deploy(anvil)
        domain = replace(domain_for(address), version="1")  # what a v1 node would sign over
        expected = "another EIP-712 domain"
    else:
        address = str(deploy_contract(connect(anvil.url), artifacts.erc1056()).address)
        domain = domain_for(address)
        expected = "not a keyreg registry"
    registry = Registry(domain, MemoryStore())
    service = ChainService(registry, make_config(tmp_path, anvil.url, address), RELAYER_KEY)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await wait_for(lambda: expected in str(service.status().get("last_error")), what="the refusal")
            assert service.ready is False
            assert service.watcher.state.scanned < 0  # nothing indexed from that contract
            nursery.cancel_scope.cancel()

    trio.run(main)
