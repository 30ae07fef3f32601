"""Which contracts are keyreg DAOs: recognised by their deployed code, never by what they answer.

Anyone can deploy a contract that answers ``registry()`` and ``token()`` and name it as a
subject's governor; if the node believed such answers, its relayer would pay for whatever that
contract's ``castVoteBySig`` burns (issue 13, finding 1). So a named address is recognised only if:

1. its runtime code equals the ``deployedBytecode`` of our KeyregGovernor or KeyregTimelock
   artifact, with the immutables (which differ per deployment: registry, token, EIP-712 name
   hashes, the contract's own address) masked by the artifact's ``immutableReferences``;
2. for a timelock, its governor (an account granted PROPOSER_ROLE) runs our
   KeyregTimelockGovernor code and names this timelock as its ``timelock()``;
3. the governor's ``registry()`` is this node's registry and its ``token()`` runs our
   KeyregMembershipToken code (the token is an immutable too: only a call reveals it);
4. that token's ``executor()`` (the only account that may add or remove members) is this DAO's
   executor: the DAO's membership changes by its own votes only. Our governor's constructor
   already refuses a foreign token (ForeignMembershipToken); the node checks it again because the
   bytes it trusts are the runtime code, and the constructor is not part of it.

With the code fixed, every call the relay pays for runs our code: its gas is bounded and known.
The views read in 3 are only called on recognised code, so they cost a bounded eth_call each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from web3 import Web3

from ..chain.artifacts import load
from .ballots import MAX_NAME_CHARS
from .tx import GOVERNOR, TIMELOCK, TIMELOCK_GOVERNOR, TOKEN, call

# A timelock's RoleGranted(PROPOSER_ROLE) history is read to find its governor; only this many
# candidates are checked (a genuine keyreg timelock has exactly one proposer).
MAX_PROPOSER_CANDIDATES = 8
VIEW_GAS = 200_000  # gas given to each view call on recognised code (they use a few thousand)


@dataclass(frozen=True)
class CodeTemplate:
    """An artifact's runtime code with its immutable slots zeroed, and where those slots are."""

    name: str
    code: bytes
    masks: tuple[tuple[int, int], ...]  # (start, length)

    def matches(self, code: bytes) -> bool:
        """True if ``code`` is this artifact's runtime code with any values in the immutable slots."""
        if len(code) != len(self.code):
            return False
        masked = bytearray(code)
        for start, length in self.masks:
            masked[start : start + length] = bytes(length)
        return bytes(masked) == self.code


@cache
def template(name: str) -> CodeTemplate:
    """The code template of a committed artifact (its JSON carries immutableReferences)."""
    data = json.loads(resources.files("keyreg.chain").joinpath("artifacts", f"{name}.json").read_text())
    refs = data.get("immutableReferences")
    if refs is None:
        raise RuntimeError(f"artifact {name} has no immutableReferences: rebuild with contracts/compile.js")
    masks = tuple(sorted((int(r["start"]), int(r["length"])) for slots in refs.values() for r in slots))
    code = bytearray(bytes.fromhex(data["deployedBytecode"].removeprefix("0x")))
    for start, length in masks:
        code[start : start + length] = bytes(length)  # solc leaves zeros there already; be sure
    return CodeTemplate(name, bytes(code), masks)


def code_kind(code: bytes) -> str | None:
    """Which of our contracts ``code`` is (artifact name), or None."""
    for name in (GOVERNOR, TIMELOCK_GOVERNOR, TIMELOCK, TOKEN):
        if template(name).matches(code):
            return name
    return None


@dataclass(frozen=True)
class RecognisedDao:
    """A keyreg DAO whose code and registry were checked."""

    governor: str  # checksummed
    executor: str  # what subjects name: the governor, or its timelock
    token: str
    name: str  # the governor's EIP-712 name (what ballots are signed under)


class Recogniser:
    """Decides whether an address a subject named is a keyreg DAO of ``registry`` (sync, blocking)."""

    def __init__(self, w3: Web3, registry: str) -> None:
        self.w3 = w3
        self.registry = Web3.to_checksum_address(registry)
        self._governor_abi = load(TIMELOCK_GOVERNOR).abi
        self._timelock_abi = load(TIMELOCK).abi
        self._token_abi = load(TOKEN).abi

    def _code(self, address: str) -> bytes:
        return bytes(call(self.w3, "eth_getCode", lambda: self.w3.eth.get_code(Web3.to_checksum_address(address))))

    def recognise(self, named: str) -> RecognisedDao | None:
        """The DAO behind a named address, or None if it is not one of ours for this registry.

        Raises ChainError (retry later) when the RPC endpoint fails; returns None for anything
        the contracts themselves answer wrongly.
        """
        named = Web3.to_checksum_address(named)
        kind = code_kind(self._code(named))
        if kind == GOVERNOR:
            return self._check_governor(named, expected_executor=named, timelocked=False)
        if kind == TIMELOCK:
            for candidate in self._proposers(named):
                if code_kind(self._code(candidate)) == TIMELOCK_GOVERNOR:
                    dao = self._check_governor(candidate, expected_executor=named, timelocked=True)
                    if dao is not None:
                        return dao
        # A KeyregTimelockGovernor named directly can never execute (its timelock calls the
        # registry), and anything else is not ours: nothing to index or relay for.
        return None

    def _proposers(self, timelock: str) -> list[str]:
        contract = self.w3.eth.contract(address=timelock, abi=self._timelock_abi)

        def fetch() -> list[str]:
            role = contract.functions.PROPOSER_ROLE().call({"gas": VIEW_GAS})
            logs = contract.events.RoleGranted().get_logs(from_block=0, argument_filters={"role": role})
            out: list[str] = []
            for lg in logs:
                account = Web3.to_checksum_address(lg["args"]["account"])
                if account not in out:
                    out.append(account)
                if len(out) >= MAX_PROPOSER_CANDIDATES:
                    break
            return out

        return call(self.w3, "timelock proposers", fetch)

    def _check_governor(self, governor: str, *, expected_executor: str, timelocked: bool) -> RecognisedDao | None:
        f = self.w3.eth.contract(address=governor, abi=self._governor_abi).functions
        opts = {"gas": VIEW_GAS}
        registry = call(self.w3, "registry", lambda: f.registry().call(opts))
        if Web3.to_checksum_address(registry) != self.registry:
            return None
        if timelocked:
            timelock = call(self.w3, "timelock", lambda: f.timelock().call(opts))
            if Web3.to_checksum_address(timelock) != expected_executor:
                return None
        token = Web3.to_checksum_address(call(self.w3, "token", lambda: f.token().call(opts)))
        if code_kind(self._code(token)) != TOKEN:
            return None
        t = self.w3.eth.contract(address=token, abi=self._token_abi).functions
        if Web3.to_checksum_address(call(self.w3, "executor", lambda: t.executor().call(opts))) != expected_executor:
            return None  # someone else changes this DAO's membership: not a keyreg DAO
        # Kept cut to one character past what a ballot may name: a longer name matches no ballot.
        name = str(call(self.w3, "name", lambda: f.name().call(opts)))[: MAX_NAME_CHARS + 1]
        return RecognisedDao(governor=governor, executor=expected_executor, token=token, name=name)
