"""Compiled contract artifacts: committed JSON (ABI + bytecode) so Python-only runs need no node.

``node contracts/compile.js`` writes ``node/chain/artifacts/<Name>.json``; ``--check`` fails when
they drift from ``contracts/src``. The ERC-1056 registry (did:ethr) is only used by the gas bench
and is read from ``contracts/node_modules`` (never committed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

_ERC1056_ARTIFACT = Path("ethr-did-registry/artifacts/contracts/EthereumDIDRegistry.sol/EthereumDIDRegistry.json")


@dataclass(frozen=True, slots=True)
class Artifact:
    """What deploying and calling a contract needs."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-prefixed creation code
    deployed_bytecode: str  # 0x-prefixed runtime code
    compiler: str = ""
    source_sha256: str = ""


@cache
def load(name: str) -> Artifact:
    """A committed artifact by contract name (e.g. "KeyRegistry")."""
    text = resources.files("keyreg.chain").joinpath("artifacts", f"{name}.json").read_text()
    data = json.loads(text)
    return Artifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler=data["compiler"]["solc"],
        source_sha256=data["sourceSha256"],
    )


def key_registry() -> Artifact:
    """The KeyRegistry contract."""
    return load("KeyRegistry")


def contracts_dir() -> Path:
    """The repository's contracts/ directory (only present in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "contracts"


def erc1056(node_modules: Path | None = None) -> Artifact:
    """ERC-1056 EthereumDIDRegistry from npm ``ethr-did-registry`` (FileNotFoundError if not installed)."""
    base = node_modules or contracts_dir() / "node_modules"
    data = json.loads((base / _ERC1056_ARTIFACT).read_text())
    return Artifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
    )
