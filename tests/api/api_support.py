"""Helpers for the API tests: a registry on the in-memory store with a fixed clock, and a subject."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x nudges TestClient users from httpx to its "httpx2" fork; httpx is what we have
    # (and what the node's CLI uses). The notice is about packaging, not behaviour.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from keyreg.api.app import ApiContext, create_app
from keyreg.config import ApiConfig, Config
from keyreg.core import builder
from keyreg.core.codec import event_to_obj
from keyreg.core.eip712 import event_digest
from keyreg.core.records import SignedEvent
from keyreg.keys.service_keys import ServiceKey
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

NOW = 1_700_000_000
SECRETS = [bytes([i]) * 32 for i in (1, 2, 3)]
NEXT = [bytes([i]) * 32 for i in (4, 5, 6)]


class Clock:
    def __init__(self, t: int = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return float(self.t)


@dataclass
class Subject:
    """A subject driven by the tests: it signs with SECRETS (2 of 3)."""

    config: Config
    key: ServiceKey
    inception: SignedEvent
    subject: bytes = b""
    seq: int = 0
    head: bytes = b""
    keys: list[ServiceKey] = field(default_factory=list)

    @classmethod
    def make(cls, config: Config, alg: str = "Ed25519", t: int = NOW) -> Subject:
        key = ServiceKey.generate(alg, "k1")
        ev = builder.inception(
            t, builder.controller_set(SECRETS), 2, builder.controller_set(NEXT), 2, [key.published(("sig",), t)]
        )
        signed = builder.sign_event(config.domain, ev, SECRETS[:2])
        digest = event_digest(config.domain, ev)
        return cls(config, key, signed, digest, 0, digest, [key])

    @property
    def id(self) -> str:
        return "0x" + self.subject.hex()

    def next_update(self, t: int, publish: Any = (), retire: Any = ()) -> SignedEvent:
        ev = builder.update(self.subject, self.seq + 1, self.head, t, publish, retire)
        return self.advance(builder.sign_event(self.config.domain, ev, SECRETS[:2]))

    def next_revocation(self, t: int, kid: str, effective: int) -> SignedEvent:
        ev = builder.revocation(self.subject, self.seq + 1, self.head, t, kid, effective, "test")
        return self.advance(builder.sign_event(self.config.domain, ev, SECRETS[:2]))

    def advance(self, signed: SignedEvent) -> SignedEvent:
        self.seq = signed.event.seq
        self.head = event_digest(self.config.domain, signed.event)
        return signed


def make_api(**api: Any) -> tuple[TestClient, Registry, Clock, Config]:
    clock = Clock()
    config = Config()
    config = replace(config, api=replace(ApiConfig(), **api))
    registry = Registry(config.domain, MemoryStore(), config.limits, clock=clock)
    client = TestClient(create_app(ApiContext(registry, config)), client=("127.0.0.1", 5000))
    return client, registry, clock, config


def obj(signed: SignedEvent) -> dict[str, Any]:
    return event_to_obj(signed)
