"""Fixtures for the governance tests (helpers and constants in gov_fixture.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gov_fixture import DEPLOYER, MEMBERS, VOTING_DELAY, VOTING_PERIOD, GovChain
from web3 import Web3

from keyreg.chain.deploy import ANVIL_CHAIN_ID, AnvilProcess, deploy_registry
from keyreg.core.hashing import address_of_private_key
from keyreg.core.records import Domain
from keyreg.gov.contracts import connect, deploy_dao


@pytest.fixture(scope="session")
def gov_session(anvil_process: AnvilProcess) -> GovChain:
    w3 = connect(anvil_process.url)
    registry = deploy_registry(w3)
    domain = Domain(ANVIL_CHAIN_ID, bytes.fromhex(registry.address[2:]))
    members = [(Web3.to_checksum_address(address_of_private_key(k)), 1) for k in MEMBERS]
    dao = deploy_dao(w3, DEPLOYER, registry.address, members, voting_delay=VOTING_DELAY, voting_period=VOTING_PERIOD)
    other = deploy_dao(w3, DEPLOYER, registry.address, members, name="other DAO", voting_period=VOTING_PERIOD)
    anvil_process.rpc("anvil_mine", "0x2")  # the members' delegation checkpoints are in the past
    return GovChain(anvil_process, w3, registry, domain, dao, other)


@pytest.fixture
def gov_chain(gov_session: GovChain) -> Iterator[GovChain]:
    snapshot = gov_session.anvil.rpc("evm_snapshot")
    try:
        yield gov_session
    finally:
        assert gov_session.anvil.rpc("evm_revert", snapshot) is True
