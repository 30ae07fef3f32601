"""Helpers for the node-side chain tests (client, watcher, anchoring): a private anvil, a deployed
registry contract, a node Registry on the in-memory store, and subjects with signed events."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import trio

from keyreg.chain.deploy import (
    ANVIL_CHAIN_ID,
    ANVIL_DEV_KEY,
    AnvilProcess,
    anvil_binary,
    connect,
    deploy_registry,
    start_anvil,
)
from keyreg.core import builder
from keyreg.core.eip712 import event_digest
from keyreg.core.records import ZERO20, Domain, PublishedKey, SignedEvent
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

RELAYER_KEY = bytes.fromhex(ANVIL_DEV_KEY[2:])
# anvil default account 1 (public test key)
OTHER_KEY = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")


@contextmanager
def private_anvil(*extra_args: str) -> Iterator[AnvilProcess]:
    """A fresh anvil for this test module (reorg tests revert state, so they do not share one)."""
    if not anvil_binary().exists():
        pytest.skip(f"anvil binary missing at {anvil_binary()}: run `npm ci --prefix contracts`")
    anvil = start_anvil(extra_args=extra_args)
    try:
        yield anvil
    finally:
        anvil.stop()


def deploy(anvil: AnvilProcess) -> str:
    """Deploy a KeyRegistry; returns its address."""
    return str(deploy_registry(connect(anvil.url)).address)


def domain_for(address: str) -> Domain:
    return Domain(ANVIL_CHAIN_ID, bytes.fromhex(address[2:]))


def node_registry(address: str) -> Registry:
    return Registry(domain_for(address), MemoryStore())


@dataclass
class Subject:
    """A subject with 1-of-1 controllers and a pre-committed next generation."""

    domain: Domain
    secrets: list[list[bytes]] = field(default_factory=list)  # per generation
    events: list[SignedEvent] = field(default_factory=list)
    gen: int = 0

    @property
    def id(self) -> bytes:
        return event_digest(self.domain, self.events[0].event)

    @property
    def head(self) -> bytes:
        return event_digest(self.domain, self.events[-1].event)

    def incept(self, seed: int, now: int, governor: bytes = ZERO20) -> SignedEvent:
        self.secrets = [[(seed * 1000 + g + 1).to_bytes(32, "big")] for g in range(64)]
        key = PublishedKey("k0", "Ed25519", bytes(32), ("sig",), now, 0)
        ev = builder.inception(
            now,
            builder.controller_set(self.secrets[0]),
            1,
            builder.controller_set(self.secrets[1]),
            1,
            keys=[key],
            governor=governor,
        )
        signed = builder.sign_event(self.domain, ev, self.secrets[0])
        self.events.append(signed)
        return signed

    def update(self, now: int, key_id: str) -> SignedEvent:
        key = PublishedKey(key_id, "Ed25519", bytes(31) + bytes([len(self.events)]), ("sig",), now, 0)
        ev = builder.update(self.id, len(self.events), self.head, now, publish=[key])
        signed = builder.sign_event(self.domain, ev, self.secrets[self.gen])
        self.events.append(signed)
        return signed

    def rotate(self, now: int) -> SignedEvent:
        self.gen += 1
        ev = builder.rotation(
            self.id,
            len(self.events),
            self.head,
            now,
            builder.controller_set(self.secrets[self.gen]),
            1,
            builder.controller_set(self.secrets[self.gen + 1]),
            1,
        )
        signed = builder.sign_event(self.domain, ev, self.secrets[self.gen])
        self.events.append(signed)
        return signed


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until true or fail after ``timeout`` seconds (no blind sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await trio.sleep(0.05)
