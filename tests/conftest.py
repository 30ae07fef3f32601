"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# =============================================================================================
# anvil (owned by the contracts work; tests/chain/conftest.py builds on it)
#
# `anvil_process` spawns the native anvil binary from contracts/node_modules once per session on
# a free loopback port and kills it by PID at the end; `anvil` is its RPC URL. Without the binary
# the chain tests skip with the reason, except in CI (CI is set), where `.ci/run` has run
# `npm ci --prefix contracts` and a missing binary is an error.
# Tests that change chain state isolate themselves with evm_snapshot/evm_revert.


@pytest.fixture(scope="session")
def anvil_process() -> Iterator[object]:
    from keyreg.chain.deploy import anvil_binary, start_anvil

    if not anvil_binary().exists():
        reason = f"anvil binary missing at {anvil_binary()}: run `npm ci --prefix contracts`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    process = start_anvil()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def anvil(anvil_process: object) -> str:
    """RPC URL of the session's anvil (http://127.0.0.1:PORT, chain id 31337)."""
    return anvil_process.url  # type: ignore[attr-defined, no-any-return]


# ============================================================================ end of anvil ====
