"""Helpers the governance tests share (imported by conftest.py and the tests; a unique module name,
since several test directories have a conftest.py on sys.path).

For the governance tests: the session's anvil (tests/conftest.py), a KeyRegistry, a
3-member DAO, and subjects anchored with or without a governor. Each test runs between an
evm_snapshot and an evm_revert, so tests never see each other's proposals or votes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from keyreg.chain.deploy import AnvilProcess, call_for
from keyreg.cli.devnet import anvil_account_key
from keyreg.core import builder
from keyreg.core.eip712 import event_digest
from keyreg.core.hashing import address_of_private_key
from keyreg.core.records import ZERO20, Domain, PublishedKey, SignedEvent
from keyreg.gov.contracts import DaoDeployment

DEPLOYER = anvil_account_key(0)
MEMBERS = [anvil_account_key(4), anvil_account_key(5), bytes.fromhex("11" * 32)]  # the last one has no ETH
OUTSIDER = anvil_account_key(7)
RELAYER = anvil_account_key(8)
VOTING_DELAY = 1
VOTING_PERIOD = 10


@dataclass
class GovChain:
    anvil: AnvilProcess
    w3: Web3
    registry: Any  # bound KeyRegistry contract
    domain: Domain
    dao: DaoDeployment
    other_dao: DaoDeployment

    def mine(self, blocks: int) -> None:
        self.anvil.rpc("anvil_mine", hex(blocks))

    def subject(
        self, governor: str | bytes | None, key_id: str = "svc-1", t0: int | None = None
    ) -> tuple[bytes, SignedEvent]:
        """Anchor a new subject (naming ``governor``, or none) with one Ed25519 key valid from t0."""
        return make_subject(self.w3, self.registry, self.domain, governor, key_id, t0)


def make_subject(
    w3: Web3, registry: Any, domain: Domain, governor: str | bytes | None, key_id: str = "svc-1", t0: int | None = None
) -> tuple[bytes, SignedEvent]:
    t0 = int(time.time()) - 3600 if t0 is None else t0
    controller = bytes.fromhex(Web3.keccak(text=f"controller-{key_id}-{governor}-{t0}").hex()[-64:])
    gov = ZERO20 if governor is None else (governor if isinstance(governor, bytes) else bytes.fromhex(governor[2:]))
    key = PublishedKey(key_id, "Ed25519", b"\x01" * 32, ("sig",), t0, 0)
    event = builder.inception(t0, [address_of_private_key(controller)], 1, keys=[key], governor=gov)
    signed = builder.sign_event(domain, event, [controller])
    name, args = call_for(signed)
    tx = getattr(registry.functions, name)(*args).transact({"from": w3.eth.accounts[0], "gas": 3_000_000})
    assert w3.eth.wait_for_transaction_receipt(tx, timeout=10)["status"] == 1
    return event_digest(domain, event), signed
