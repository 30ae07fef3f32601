"""Fixtures for tests against a real anvil: a deployed KeyRegistry and snapshot isolation per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from registry_fixture import Registry, error_selectors
from web3 import Web3

from keyreg.chain.deploy import ANVIL_CHAIN_ID, AnvilProcess, connect, deploy_registry
from keyreg.core.records import Domain


@pytest.fixture(scope="session")
def chain_w3(anvil: str) -> Web3:
    return connect(anvil)


@pytest.fixture(scope="session")
def deployed_registry(chain_w3: Web3, anvil_process: AnvilProcess) -> Registry:
    contract = deploy_registry(chain_w3)
    domain = Domain(ANVIL_CHAIN_ID, bytes.fromhex(contract.address[2:]))
    return Registry(chain_w3, contract, domain, anvil_process, error_selectors(contract.abi))


@pytest.fixture
def registry(deployed_registry: Registry) -> Iterator[Registry]:
    """The session's registry, with the chain reverted to its state before the test afterwards."""
    snapshot = deployed_registry.anvil.rpc("evm_snapshot")
    try:
        yield deployed_registry
    finally:
        assert deployed_registry.anvil.rpc("evm_revert", snapshot) is True
