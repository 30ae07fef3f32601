"""The deployed-registry helper the chain tests share (imported by tests/chain/conftest.py and tests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from keyreg.chain.deploy import AnvilProcess, call_for, event_input
from keyreg.core.eip712 import event_digest
from keyreg.core.hashing import keccak
from keyreg.core.records import Domain, SignedEvent


def error_selectors(abi: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for item in abi:
        if item["type"] == "error":
            sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            out["0x" + keccak(sig.encode())[:4].hex()] = item["name"]
    return out


@dataclass
class Registry:
    """A deployed KeyRegistry plus the calls tests make against it."""

    w3: Web3
    contract: Any
    domain: Domain
    anvil: AnvilProcess
    errors: dict[str, str]

    @property
    def accounts(self) -> list[str]:
        return list(self.w3.eth.accounts)

    def transact(self, name: str, args: Sequence[Any], sender: str | None = None) -> Any:
        """Send a call from an unlocked anvil account (gas fixed: no estimate); returns the receipt."""
        fn = getattr(self.contract.functions, name)(*args)
        tx_hash = fn.transact({"from": sender or self.accounts[0], "gas": 3_000_000})
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)

    def ok(self, name: str, args: Sequence[Any], sender: str | None = None) -> Any:
        receipt = self.transact(name, args, sender)
        assert receipt["status"] == 1, f"{name} reverted: {self.error_of(name, args, sender)}"
        return receipt

    def error_of(self, name: str, args: Sequence[Any], sender: str | None = None) -> str | None:
        """The custom error a call reverts with (None if it would succeed)."""
        try:
            getattr(self.contract.functions, name)(*args).call({"from": sender or self.accounts[0]})
        except ContractCustomError as exc:
            data = exc.data if isinstance(exc.data, str) else str(exc.data)
            return self.errors.get(data[:10], data)
        return None

    def anchor(
        self,
        signed: SignedEvent,
        controllers: Sequence[bytes] | None = None,
        threshold: int | None = None,
        sender: str | None = None,
        by_operators: bool = False,
    ) -> Any:
        name, args = call_for(signed, controllers, threshold, by_operators=by_operators)
        return self.ok(name, args, sender)

    def anchor_error(
        self,
        signed: SignedEvent,
        controllers: Sequence[bytes] | None = None,
        threshold: int | None = None,
        by_operators: bool = False,
    ) -> str | None:
        name, args = call_for(signed, controllers, threshold, by_operators=by_operators)
        return self.error_of(name, args)

    def anchor_events(self, items: Sequence[tuple[SignedEvent, Sequence[bytes] | None, int | None]]) -> Any:
        return self.ok("anchorEvents", [[event_input(s, c, t) for s, c, t in items]])

    def logs(self, receipt: Any, event: str) -> list[Any]:
        return [log["args"] for log in getattr(self.contract.events, event)().process_receipt(receipt, errors=DISCARD)]

    def head(self, subject: bytes) -> tuple[int, bytes]:
        seq, digest = self.contract.functions.headOf(subject).call()
        return seq, bytes(digest)

    def digest(self, signed: SignedEvent) -> bytes:
        return event_digest(self.domain, signed.event)
