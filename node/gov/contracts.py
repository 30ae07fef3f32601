"""The DAO contracts from Python: deployment and a sync client for one governor.

Everything here is sync web3 with bounded timeouts (the node calls it through
``trio.to_thread.run_sync``; the CLI and tests call it directly). Writes estimate gas first, so
a call the contracts would refuse raises :class:`GovernanceRefused` naming the contract's custom
error (``NotAMember``, ``NotGovernor``, ``GovernorUnexpectedProposalState`` ...) before anything
is paid.

Addresses flow: ``deploy_dao`` deploys the membership token (members' votes self-delegated), the
governor (bound to one KeyRegistry), and optionally a timelock; :attr:`DaoDeployment.executor`
is the address a subject names as ``governor`` in its inception (the governor itself, or its
timelock, whichever calls the registry).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from web3 import Web3
from web3 import exceptions as w3x

from ..chain.artifacts import load
from ..core.hashing import keccak
from .decode import (
    ADD_MEMBER_SELECTOR,
    MEMBER_TOPICS,
    REMOVE_MEMBER_SELECTOR,
    UndecodableLog,
    decode_governor_log,
    decode_token_log,
)
from .decode import TOPICS as _LOG_TOPICS
from .decode import decode_membership_change as decode_membership_change
from .decode import decode_revocation as decode_revocation
from .errors import GovernanceRefused
from .recognition import code_kind

# Connections, transactions and constants live in tx.py; the `X as X` names below are re-exported
# because callers import the whole DAO client from this module.
from .tx import FINAL_STATES as FINAL_STATES
from .tx import (
    GOVERNOR,
    STATES,
    SUPPORT,
    SUPPORT_NAMES,
    TIMELOCK,
    TIMELOCK_GOVERNOR,
    TOKEN,
    ZERO_ADDRESS,
    T,
    call,
    deploy_contract,
    transact,
)
from .tx import RECEIPT_TIMEOUT_S as RECEIPT_TIMEOUT_S
from .tx import RPC_TIMEOUT_S as RPC_TIMEOUT_S
from .tx import connect as connect
from .tx import decode_revert as decode_revert
from .tx import explain as explain


def checksum(address: str | bytes) -> str:
    """Checksummed form of a 20-byte address given as bytes or hex."""
    if isinstance(address, bytes):
        address = "0x" + address.hex()
    return Web3.to_checksum_address(address)


def create_address(sender: str, nonce: int) -> str:
    """The address a CREATE from ``sender`` at ``nonce`` deploys to: keccak(rlp([sender, nonce]))[12:]."""
    if nonce == 0:
        encoded_nonce = b"\x80"
    elif nonce < 0x80:
        encoded_nonce = bytes([nonce])
    else:
        raw = nonce.to_bytes((nonce.bit_length() + 7) // 8, "big")
        encoded_nonce = bytes([0x80 + len(raw)]) + raw
    payload = b"\x94" + bytes.fromhex(sender.removeprefix("0x")) + encoded_nonce
    return checksum(keccak(bytes([0xC0 + len(payload)]) + payload)[12:])


def parse_support(value: str | int) -> int:
    """'for' / 'against' / 'abstain' (or 1 / 0 / 2) -> the GovernorCountingSimple code."""
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        code = int(value)
        if code in SUPPORT_NAMES:
            return code
    elif value.lower() in SUPPORT:
        return SUPPORT[value.lower()]
    raise GovernanceRefused(f"a vote is for, against or abstain (got {value!r})", error="BadSupport")


# ---------------------------------------------------------------------------------------------
# Deployment


@dataclass(frozen=True)
class DaoDeployment:
    """Where a DAO lives; ``executor`` is the address subjects name as their governor."""

    chain_id: int
    registry: str
    token: str
    governor: str
    timelock: str | None
    name: str
    members: list[tuple[str, int]]
    voting_delay: int
    voting_period: int
    quorum_percent: int
    proposal_threshold: int
    timelock_delay: int | None = None
    block: int = 0
    tx_hashes: list[str] = field(default_factory=list)

    @property
    def executor(self) -> str:
        """The address that calls the registry (name it as ``governor`` in an inception)."""
        return self.timelock or self.governor

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["members"] = [{"address": a, "weight": w} for a, w in self.members]
        out["executor"] = self.executor
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DaoDeployment:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["members"] = [(m["address"], int(m["weight"])) for m in data.get("members", [])]
        return cls(**known)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> DaoDeployment:
        return cls.from_dict(json.loads(path.read_text()))


def deploy_dao(
    w3: Web3,
    deployer_key: bytes,
    registry: str,
    members: Sequence[tuple[str, int]],
    *,
    name: str = "keyreg DAO",
    symbol: str = "KRDAO",
    voting_delay: int = 1,
    voting_period: int = 20,
    quorum_percent: int = 67,
    proposal_threshold: int = 1,
    timelock_delay: int | None = None,
    progress: Callable[[str], None] = lambda _s: None,
) -> DaoDeployment:
    """Deploy a DAO for ``registry``: membership token, governor, and (with a delay) a timelock.

    Delay and period count blocks (the token's clock). ``proposal_threshold`` is in membership
    units (1 = only members may propose). With a timelock: the governor is its only proposer and
    canceller, anyone may execute a passed operation, and the deployer renounces the admin role,
    so nothing but a passed proposal can ever go through it.
    """
    if not members:
        raise GovernanceRefused("a DAO needs at least one member", error="NoMembers")
    if not 1 <= quorum_percent <= 100:
        raise GovernanceRefused(f"quorum is a percentage in 1..100 (got {quorum_percent})", error="BadQuorum")
    addresses = [checksum(a) for a, _ in members]
    weights = [int(w) for _, w in members]
    registry = checksum(registry)
    if len(call(w3, "eth_getCode", lambda: w3.eth.get_code(registry))) == 0:
        raise GovernanceRefused(f"no contract at {registry}: deploy the KeyRegistry first", error="NoRegistry")
    txs: list[str] = []
    deployer = Account.from_key(deployer_key).address
    timelock = None
    if timelock_delay is None:
        # The token names the governor as the only account that may change membership, and the
        # governor's constructor checks it (ForeignMembershipToken): the governor's address is the
        # deployer's next CREATE address after the token's. Another transaction from the deployer
        # in between makes the governor's deployment revert, not a DAO with a foreign token.
        nonce = int(call(w3, "eth_getTransactionCount", lambda: w3.eth.get_transaction_count(deployer, "pending")))
        executor = create_address(deployer, nonce + 1)
    else:
        timelock = deploy_contract(w3, deployer_key, load(TIMELOCK), timelock_delay, [], [ZERO_ADDRESS], deployer)
        progress(f"timelock {timelock.address} (min delay {timelock_delay}s)")
        executor = timelock.address
    token = deploy_contract(
        w3, deployer_key, load(TOKEN), f"{name} membership", symbol, executor, addresses, weights
    )  # fmt: skip
    progress(f"membership token {token.address} ({len(addresses)} members; changed only by {executor})")
    if timelock is None:
        governor = deploy_contract(
            w3, deployer_key, load(GOVERNOR), name, token.address, registry,
            voting_delay, voting_period, proposal_threshold, quorum_percent,
        )  # fmt: skip
    else:
        governor = deploy_contract(
            w3, deployer_key, load(TIMELOCK_GOVERNOR), name, token.address, registry, timelock.address,
            voting_delay, voting_period, proposal_threshold, quorum_percent,
        )  # fmt: skip
        tl = timelock.functions
        for role_fn in (tl.PROPOSER_ROLE, tl.CANCELLER_ROLE):
            role = call(w3, "role", lambda f=role_fn: f().call())
            r = transact(w3, deployer_key, tl.grantRole(role, governor.address), "timelock grantRole")
            txs.append(r["transactionHash"].to_0x_hex())
        admin = call(w3, "role", lambda: tl.DEFAULT_ADMIN_ROLE().call())
        r = transact(w3, deployer_key, tl.renounceRole(admin, deployer), "timelock renounceRole")
        txs.append(r["transactionHash"].to_0x_hex())
    progress(
        f"governor {governor.address} (delay {voting_delay}, period {voting_period} blocks, quorum {quorum_percent}%)"
    )
    return DaoDeployment(
        chain_id=int(call(w3, "eth_chainId", lambda: w3.eth.chain_id)),
        registry=registry,
        token=token.address,
        governor=governor.address,
        timelock=timelock.address if timelock is not None else None,
        name=name,
        members=list(zip(addresses, weights, strict=True)),
        voting_delay=voting_delay,
        voting_period=voting_period,
        quorum_percent=quorum_percent,
        proposal_threshold=proposal_threshold,
        timelock_delay=timelock_delay,
        block=int(call(w3, "eth_blockNumber", lambda: w3.eth.block_number)),
        tx_hashes=txs,
    )


# ---------------------------------------------------------------------------------------------
# Proposals


def revocation_calldata(subject: bytes, key_id: str, effective_at: int, reason_hash: bytes) -> bytes:
    """KeyRegistry.revokeByGovernance calldata with proposalId 0 (the governor binds the real id)."""
    registry = Web3().eth.contract(abi=load("KeyRegistry").abi)
    data = registry.encode_abi("revokeByGovernance", [subject, key_id, effective_at, reason_hash, 0])
    return bytes.fromhex(data[2:])


def revocation_description(subject: bytes, key_id: str, effective_at: int, reason: str, salt: str = "") -> str:
    """The human-readable proposal description (its hash is part of the proposal id)."""
    what = f"key {key_id}" if key_id else "the whole subject"
    text = f"keyreg: revoke {what} of subject 0x{subject.hex()} from {effective_at}\n\n{reason}".rstrip()
    return f"{text}\n\nsalt: {salt}" if salt else text


def add_member_calldata(member: str, weight: int) -> bytes:
    """KeyregMembershipToken.addMember calldata (canonical: what KeyregGovernor.propose accepts)."""
    return ADD_MEMBER_SELECTOR + abi_encode(["address", "uint256"], [checksum(member), int(weight)])


def remove_member_calldata(member: str) -> bytes:
    """KeyregMembershipToken.removeMember calldata (canonical)."""
    return REMOVE_MEMBER_SELECTOR + abi_encode(["address"], [checksum(member)])


def membership_description(adds: Sequence[tuple[str, int]], removes: Sequence[str], reason: str, salt: str = "") -> str:
    """The human-readable description of a membership proposal (its hash is part of the proposal id)."""
    parts = [f"remove {checksum(m)}" for m in removes] + [f"add {checksum(m)} (weight {w})" for m, w in adds]
    text = f"keyreg: membership: {'; '.join(parts)}\n\n{reason}".rstrip()
    return f"{text}\n\nsalt: {salt}" if salt else text


@dataclass(frozen=True)
class ProposalActions:
    """What ``queue``/``execute`` need (recovered from the ProposalCreated event)."""

    proposal_id: int
    targets: list[str]
    values: list[int]
    calldatas: list[bytes]
    description: bytes  # exactly as proposed (its hash is part of the proposal id; may not be UTF-8)
    proposer: str
    vote_start: int
    vote_end: int
    block: int

    @property
    def description_hash(self) -> bytes:
        return keccak(self.description)


class Governance:
    """A sync client for one keyreg governor (plain or timelocked)."""

    def __init__(self, w3: Web3, governor: str) -> None:
        self.w3 = w3
        self.address = checksum(governor)
        self.contract = w3.eth.contract(address=self.address, abi=load(TIMELOCK_GOVERNOR).abi)
        self.f = self.contract.functions

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return call(self.w3, what, fn)

    # ------------------------------------------------------------------ reads

    def is_governor(self) -> bool:
        """True if the address runs our governor code (plain or timelocked; immutables aside).

        Only the code is trusted: any contract can answer ``registry()`` and ``token()``. Whether
        it governs *our* registry is keyreg.gov.recognition's check.
        """
        code = bytes(self._call("eth_getCode", lambda: self.w3.eth.get_code(self.address)))
        return code_kind(code) in (GOVERNOR, TIMELOCK_GOVERNOR)

    def name(self) -> str:
        return str(self._call("name", lambda: self.f.name().call()))

    def registry(self) -> str:
        return str(self._call("registry", lambda: self.f.registry().call()))

    def token(self) -> str:
        return str(self._call("token", lambda: self.f.token().call()))

    def timelock(self) -> str | None:
        """The timelock address, or None for a plain governor."""
        try:
            return str(self.f.timelock().call())
        except (w3x.ContractLogicError, w3x.BadFunctionCallOutput, ValueError):
            return None

    def executor(self) -> str:
        """The address that calls the registry (what subjects name)."""
        return self.timelock() or self.address

    def state(self, proposal_id: int) -> str:
        return STATES[int(self._call("state", lambda: self.f.state(proposal_id).call()))]

    def votes(self, proposal_id: int) -> dict[str, int]:
        against, for_, abstain = self._call("proposalVotes", lambda: self.f.proposalVotes(proposal_id).call())
        return {"for": int(for_), "against": int(against), "abstain": int(abstain)}

    def has_voted(self, proposal_id: int, voter: str) -> bool:
        return bool(self._call("hasVoted", lambda: self.f.hasVoted(proposal_id, checksum(voter)).call()))

    def nonce(self, voter: str) -> int:
        return int(self._call("nonces", lambda: self.f.nonces(checksum(voter)).call()))

    def snapshot(self, proposal_id: int) -> int:
        return int(self._call("proposalSnapshot", lambda: self.f.proposalSnapshot(proposal_id).call()))

    def deadline(self, proposal_id: int) -> int:
        return int(self._call("proposalDeadline", lambda: self.f.proposalDeadline(proposal_id).call()))

    def eta(self, proposal_id: int) -> int:
        return int(self._call("proposalEta", lambda: self.f.proposalEta(proposal_id).call()))

    def voting_power(self, voter: str, timepoint: int) -> int:
        return int(self._call("getVotes", lambda: self.f.getVotes(checksum(voter), timepoint).call()))

    def quorum(self, timepoint: int) -> int:
        return int(self._call("quorum", lambda: self.f.quorum(timepoint).call()))

    def clock(self) -> int:
        return int(self._call("clock", lambda: self.f.clock().call()))

    def proposals(self, from_block: int = 0, to_block: int | str = "latest") -> list[ProposalActions]:
        """Every proposal created on this governor in the block range, oldest first."""

        topic = next(t for t, name in _LOG_TOPICS.items() if name == "ProposalCreated")

        def fetch() -> list[ProposalActions]:
            logs = self.w3.eth.get_logs(
                {"address": self.address, "fromBlock": from_block, "toBlock": to_block, "topics": [topic]}
            )
            out = []
            for lg in logs:
                try:
                    decoded = decode_governor_log(list(lg["topics"]), bytes(lg["data"]))
                except UndecodableLog:
                    continue  # not a proposal anyone could queue or execute
                if decoded is None:
                    continue
                a = decoded.args
                out.append(ProposalActions(
                    proposal_id=a["proposalId"], targets=[checksum(t) for t in a["targets"]], values=a["values"],
                    calldatas=a["calldatas"], description=a["descriptionRaw"], proposer=checksum(a["proposer"]),
                    vote_start=a["voteStart"], vote_end=a["voteEnd"], block=int(lg["blockNumber"]),
                ))  # fmt: skip
            return out

        return self._call("ProposalCreated logs", fetch)

    def actions(self, proposal_id: int, from_block: int = 0) -> ProposalActions:
        """The actions of one proposal (GovernanceRefused if this governor has no such proposal)."""
        for p in self.proposals(from_block):
            if p.proposal_id == proposal_id:
                return p
        raise GovernanceRefused(f"governor {self.address} has no proposal {proposal_id}", error="UnknownProposal")

    def summary(self, proposal_id: int) -> dict[str, Any]:
        """State, tallies, quorum and timing of one proposal (JSON-able)."""
        state = self.state(proposal_id)
        snapshot = self.snapshot(proposal_id)
        clock = self.clock()
        return {
            "governor": self.address,
            "proposalId": str(proposal_id),
            "state": state,
            "votes": self.votes(proposal_id),
            "quorum": self.quorum(snapshot) if snapshot < clock else None,
            "snapshot": snapshot,
            "deadline": self.deadline(proposal_id),
            "eta": self.eta(proposal_id) or None,
            "clock": clock,
        }

    # ------------------------------------------------------------------ writes

    def propose_revocation(
        self,
        proposer_key: bytes,
        subject: bytes,
        key_id: str,
        effective_at: int,
        reason: str = "",
        reason_hash: bytes | None = None,
        salt: str = "",
        check_subject: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        """Propose revoking ``key_id`` ("" = the whole subject) from ``effective_at``; returns (id, receipt).

        ``check_subject`` first asks the registry which governor the subject named and refuses
        (without paying) if it is not this DAO: such a proposal could pass but never execute.
        """
        registry = self.registry()
        if check_subject:
            check_named_governor(self.w3, registry, subject, self.executor())
        reason_hash = reason_hash if reason_hash is not None else keccak(reason.encode())
        calldata = revocation_calldata(subject, key_id, effective_at, reason_hash)
        description = revocation_description(subject, key_id, effective_at, reason, salt)
        fn = self.f.propose([registry], [0], [calldata], description)
        proposal_id = int(self._call("getProposalId", lambda: self.f.getProposalId(
            [registry], [0], [calldata], keccak(description.encode())).call()))  # fmt: skip
        receipt = transact(self.w3, proposer_key, fn, "propose")
        return proposal_id, receipt

    def propose_membership(
        self,
        proposer_key: bytes,
        adds: Sequence[tuple[str, int]] = (),
        removes: Sequence[str] = (),
        reason: str = "",
        salt: str = "",
    ) -> tuple[int, dict[str, Any]]:
        """Propose removing ``removes`` and adding ``adds`` (address, weight) on the DAO's own token,
        in one proposal (removals first, so replacing a member is one vote); returns (id, receipt).

        The governor accepts these calls on its own token only; the token accepts them only from
        the DAO's executor, so they take effect only if the vote passes (and, for a timelocked
        DAO, after its delay).
        """
        if not adds and not removes:
            raise GovernanceRefused("a membership proposal adds or removes at least one member", error="NoChange")
        token = self.token()
        calldatas = [remove_member_calldata(m) for m in removes] + [add_member_calldata(m, w) for m, w in adds]
        targets = [token] * len(calldatas)
        values = [0] * len(calldatas)
        description = membership_description(adds, removes, reason, salt)
        fn = self.f.propose(targets, values, calldatas, description)
        proposal_id = int(self._call("getProposalId", lambda: self.f.getProposalId(
            targets, values, calldatas, keccak(description.encode())).call()))  # fmt: skip
        receipt = transact(self.w3, proposer_key, fn, "propose")
        return proposal_id, receipt

    def members(self, from_block: int = 0) -> dict[str, int]:
        """The DAO's current members and weights (from the token's MemberAdded/MemberRemoved logs,
        checked against ``balanceOf``), checksummed address -> weight."""
        token = self.w3.eth.contract(address=checksum(self.token()), abi=load(TOKEN).abi)
        topics = [[t for t, name in MEMBER_TOPICS.items()]]

        def fetch() -> list[Any]:
            return list(self.w3.eth.get_logs(
                {"address": token.address, "fromBlock": from_block, "toBlock": "latest", "topics": topics}
            ))  # fmt: skip

        seen: dict[str, int] = {}
        for lg in self._call("membership logs", fetch):
            decoded = decode_token_log(list(lg["topics"]), bytes(lg["data"]))
            if decoded is not None:
                seen[checksum(decoded.args["member"])] = 0
        out = {}
        for member in seen:
            weight = int(self._call("balanceOf", lambda m=member: token.functions.balanceOf(m).call()))
            if weight:
                out[member] = weight
        return out

    def cast_vote(self, voter_key: bytes, proposal_id: int, support: int, reason: str = "") -> dict[str, Any]:
        """Vote directly (the voter pays gas)."""
        f = self.f
        fn = f.castVoteWithReason(proposal_id, support, reason) if reason else f.castVote(proposal_id, support)
        return transact(self.w3, voter_key, fn, "castVote")

    def cast_vote_by_sig(
        self, relayer_key: bytes, proposal_id: int, support: int, voter: str, signature: bytes
    ) -> dict[str, Any]:
        """Submit a member's signed ballot (the relayer pays gas)."""
        fn = self.f.castVoteBySig(proposal_id, support, checksum(voter), signature)
        return transact(self.w3, relayer_key, fn, "castVoteBySig")

    def queue(self, sender_key: bytes, proposal_id: int, from_block: int = 0) -> dict[str, Any]:
        """Queue a succeeded proposal in the timelock (timelocked governors only)."""
        a = self.actions(proposal_id, from_block)
        fn = self.f.queue(a.targets, a.values, a.calldatas, a.description_hash)
        return transact(self.w3, sender_key, fn, "queue")

    def execute(self, sender_key: bytes, proposal_id: int, from_block: int = 0) -> dict[str, Any]:
        """Execute a succeeded (or queued and ripe) proposal: the registry revocation happens here."""
        a = self.actions(proposal_id, from_block)
        fn = self.f.execute(a.targets, a.values, a.calldatas, a.description_hash)
        return transact(self.w3, sender_key, fn, "execute")


def named_governor(w3: Web3, registry: str, subject: bytes) -> str | None:
    """The governor a subject named at inception according to the registry (None: none named)."""
    contract = w3.eth.contract(address=checksum(registry), abi=load("KeyRegistry").abi)
    state = call(w3, "subjectState", lambda: contract.functions.subjectState(subject).call())
    head, governor = bytes(state[4]), str(state[7])
    if head == b"\x00" * 32:
        raise GovernanceRefused(
            f"the registry has no anchored inception for subject 0x{subject.hex()}: anchor it first",
            error="UnknownSubject",
        )
    return None if int(governor, 16) == 0 else governor


def check_named_governor(w3: Web3, registry: str, subject: bytes, executor: str) -> None:
    """Refuse unless ``subject`` named ``executor`` as its governor (the registry's rule, checked early)."""
    named = named_governor(w3, registry, subject)
    if named is None:
        raise GovernanceRefused(
            f"subject 0x{subject.hex()} named no governor at inception: no DAO can revoke its keys",
            error="NoGovernor",
        )
    if named.lower() != executor.lower():
        raise GovernanceRefused(
            f"subject 0x{subject.hex()} named governor {named}, not this DAO ({executor}): "
            "its proposal could never execute",
            error="NotGovernor",
        )


def private_key_of(text: str) -> bytes:
    """A hex private key (0x optional) -> 32 bytes."""
    raw = text.strip().removeprefix("0x")
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise GovernanceRefused("a private key is 32 bytes of hex", error="BadKey") from None
    if len(key) != 32:
        raise GovernanceRefused("a private key is 32 bytes of hex", error="BadKey")
    return key


def address_of(private_key: bytes) -> str:
    """The checksummed address of a private key."""
    return str(Account.from_key(private_key).address)
