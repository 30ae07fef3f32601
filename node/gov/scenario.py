"""A governance revocation end to end against running nodes: what the devnet demo and the e2e test run.

:func:`run_governance_revocation` deploys a DAO, creates a subject that names it (submitted to the
first node, anchored directly), proposes revoking the subject's key, has one member vote directly
and another (holding no ETH) sign a ballot that a *different* node relays, mines through the voting
period (``anvil_mine``), executes, and waits until every node reports the key revoked by governance
from the effective time while still valid just before it. Returns a JSON-able summary.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from web3 import Web3

from ..chain.artifacts import load
from ..chain.deploy import call_for
from ..core import builder
from ..core.codec import event_to_obj
from ..core.eip712 import event_digest
from ..core.errors import NetworkError
from ..core.hashing import address_of_private_key
from ..core.records import Domain, PublishedKey
from .ballots import sign_ballot
from .contracts import DaoDeployment, Governance, address_of, connect, deploy_dao, transact
from .errors import GovernanceRefused


def wait_for(check: Callable[[], Any], timeout: float, what: str, poll_s: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; NetworkError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.HTTPError, ValueError, KeyError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise NetworkError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll_s)  # polling a condition with a deadline


def mine(w3: Web3, blocks: int) -> None:
    """Advance the chain ``blocks`` blocks (anvil_mine; a real network just has to be waited for)."""
    w3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]


def create_governed_subject(
    w3: Web3, domain: Domain, api: str, governor: str, payer_key: bytes, key_id: str, valid_from: int
) -> bytes:
    """A new subject naming ``governor``: submitted to the node at ``api`` and anchored directly."""
    controller = secrets.token_bytes(32)
    key = PublishedKey(key_id, "Ed25519", secrets.token_bytes(32), ("sig",), valid_from, 0)
    event = builder.inception(
        valid_from, [address_of_private_key(controller)], 1, keys=[key], governor=bytes.fromhex(governor[2:])
    )
    signed = builder.sign_event(domain, event, [controller])
    resp = httpx.post(f"{api}/v1/events", json=event_to_obj(signed), timeout=10)
    if resp.status_code != 200:
        raise NetworkError(f"{api} refused the inception: {resp.text[:200]}")
    registry = w3.eth.contract(address=Web3.to_checksum_address(domain.verifying_contract), abi=load("KeyRegistry").abi)
    name, args = call_for(signed)
    transact(w3, payer_key, getattr(registry.functions, name)(*args), "anchor inception")
    return event_digest(domain, event)


def key_verdict(api: str, subject: bytes, key_id: str, at: int) -> dict[str, Any]:
    resp = httpx.get(f"{api}/v1/subjects/0x{subject.hex()}/keys/{key_id}", params={"at": at}, timeout=5)
    resp.raise_for_status()
    return dict(resp.json())


def run_governance_revocation(
    rpc_url: str,
    registry: str,
    apis: Sequence[str],
    *,
    deployer_key: bytes,
    member_keys: Sequence[bytes],
    chain_id: int = 31337,
    voting_period: int = 20,
    relay_via: int = 1,
    timeout: float = 60.0,
    progress: Callable[[str], None] = lambda _s: None,
) -> dict[str, Any]:
    """Run the scenario (module docstring) on running nodes; returns its summary.

    ``member_keys``: at least 2; member 0 votes directly (needs ETH), member 1 signs a ballot
    (needs nothing). ``apis[relay_via]`` relays the ballot; ``deployer_key`` pays for the DAO, the
    subject's anchor and the execution.
    """
    w3 = connect(rpc_url)
    domain = Domain(chain_id, bytes.fromhex(registry.removeprefix("0x")))
    members = [(address_of(k), 1) for k in member_keys]
    dao: DaoDeployment = deploy_dao(
        w3, deployer_key, registry, members, name=f"demo DAO {secrets.token_hex(3)}", voting_period=voting_period
    )
    progress(f"DAO deployed: governor {dao.governor}, {len(members)} members, quorum {dao.quorum_percent}%")
    now = int(w3.eth.get_block("latest")["timestamp"])
    key_id = f"svc-gov-{secrets.token_hex(3)}"
    subject = create_governed_subject(w3, domain, apis[0], dao.executor, deployer_key, key_id, now - 3600)
    sid = "0x" + subject.hex()
    for api in apis:
        wait_for(lambda api=api: httpx.get(f"{api}/v1/subjects/{sid}", timeout=5).status_code == 200, timeout,
                 f"{api} to receive the subject by gossip")  # fmt: skip
    progress(f"subject {sid[:18]}… names the DAO; key {key_id} on every node")

    gov = Governance(w3, dao.governor)
    effective_at = now - 600
    pid, _ = gov.propose_revocation(member_keys[0], subject, key_id, effective_at, "key leaked (demo)")
    mine(w3, dao.voting_delay + 1)
    vote_receipt = gov.cast_vote(member_keys[0], pid, 1)
    progress(f"proposal {pid} open; member {members[0][0]} voted for directly")

    voter = member_keys[1]
    governor = bytes.fromhex(dao.governor[2:])
    ballot = sign_ballot(voter, chain_id, governor, gov.name(), pid, 1, gov.nonce(address_of(voter)))
    relay_api = apis[relay_via % len(apis)]
    resp = httpx.post(f"{relay_api}/v1/gov/ballots", content=ballot.encode(), timeout=10)
    if resp.status_code != 202:
        raise NetworkError(f"{relay_api} refused the ballot: {resp.text[:300]}")
    rid = resp.json()["id"]
    relayed = wait_for(
        lambda: (r := httpx.get(f"{relay_api}/v1/gov/ballots/{rid}", timeout=5).json())["status"] != "queued" and r,
        timeout,
        "the ballot relay",
    )
    if relayed["status"] != "relayed":
        raise NetworkError(f"the ballot was not relayed: {relayed}")
    progress(f"member {members[1][0]} (no ETH) signed a ballot; {relay_api} relayed it in {relayed['txHash']}")

    mine(w3, voting_period + 1)
    state = gov.state(pid)
    if state != "Succeeded":
        raise NetworkError(f"proposal {pid} is {state} after the voting period, expected Succeeded")
    exec_receipt = gov.execute(deployer_key, pid)
    progress(f"proposal {pid} executed in block {exec_receipt['blockNumber']}")

    nodes = []
    for api in apis:
        verdict = wait_for(
            lambda api=api: (v := key_verdict(api, subject, key_id, now))["status"] == "revoked" and v,
            timeout,
            f"{api} to apply the governance revocation",
        )
        before = key_verdict(api, subject, key_id, effective_at - 1)
        nodes.append({"api": api, "now": verdict, "justBefore": before})
    progress(f"every node reports {key_id} revoked by governance since {effective_at}, valid just before")
    return {
        "dao": dao.to_dict(),
        "subject": sid,
        "keyId": key_id,
        "effectiveAt": effective_at,
        "proposalId": str(pid),
        "directVote": {"voter": members[0][0], "txHash": vote_receipt["transactionHash"].to_0x_hex()},
        "ballot": relayed,
        "ballotRelayedBy": relay_api,
        "executeTx": exec_receipt["transactionHash"].to_0x_hex(),
        "executeBlock": int(exec_receipt["blockNumber"]),
        "nodes": nodes,
        "ok": all(n["now"]["status"] == "revoked" and n["justBefore"]["status"] == "valid" for n in nodes),
    }


def _relay_ballot(api: str, ballot_bytes: bytes, timeout: float) -> dict[str, Any]:
    """POST a ballot to a node and wait for its relay record to leave ``queued``."""
    resp = httpx.post(f"{api}/v1/gov/ballots", content=ballot_bytes, timeout=10)
    if resp.status_code != 202:
        raise NetworkError(f"{api} refused the ballot: {resp.text[:300]}")
    rid = resp.json()["id"]
    return dict(
        wait_for(
            lambda: (r := httpx.get(f"{api}/v1/gov/ballots/{rid}", timeout=5).json())["status"] != "queued" and r,
            timeout,
            "the ballot relay",
        )
    )


def _members_on(api: str, executor: str) -> dict[str, int]:
    resp = httpx.get(f"{api}/v1/gov/daos/{executor}", timeout=5)
    resp.raise_for_status()
    return {m["address"]: int(m["weight"]) for m in resp.json()["members"]}


def run_membership_replacement(
    rpc_url: str,
    registry: str,
    apis: Sequence[str],
    *,
    deployer_key: bytes,
    member_keys: Sequence[bytes],
    newcomer_key: bytes,
    chain_id: int = 31337,
    voting_period: int = 20,
    timeout: float = 60.0,
    progress: Callable[[str], None] = lambda _s: None,
) -> dict[str, Any]:
    """A DAO replaces a member by its own vote, then the newcomer's ballot counts and the removed
    member's does not, on running nodes.

    ``member_keys``: 3 members; member 0 proposes and votes directly (needs ETH), member 1 signs a
    ballot relayed by ``apis[1]``, member 2 is replaced by ``newcomer_key`` (which holds no ETH: it
    votes by a ballot that ``apis[-1]`` relays). Every node must show the new membership
    (``GET /v1/gov/daos/{executor}``); then a revocation passes with the newcomer's vote, the
    removed member's ballot is refused by the relay (``NotAMember``), and every node applies it.
    """
    w3 = connect(rpc_url)
    domain = Domain(chain_id, bytes.fromhex(registry.removeprefix("0x")))
    members = [(address_of(k), 1) for k in member_keys]
    dao: DaoDeployment = deploy_dao(
        w3, deployer_key, registry, members, name=f"members DAO {secrets.token_hex(3)}", voting_period=voting_period
    )
    now = int(w3.eth.get_block("latest")["timestamp"])
    key_id = f"svc-mem-{secrets.token_hex(3)}"
    subject = create_governed_subject(w3, domain, apis[0], dao.executor, deployer_key, key_id, now - 3600)
    founders = dict(members)
    for api in apis:
        wait_for(lambda api=api: _members_on(api, dao.executor) == founders, timeout,
                 f"{api} to recognise the DAO and index its founders")  # fmt: skip
    progress(f"DAO {dao.governor}: every node indexes its {len(members)} founders")

    gov = Governance(w3, dao.governor)
    old, new = members[2][0], address_of(newcomer_key)
    pid, _ = gov.propose_membership(member_keys[0], adds=[(new, 1)], removes=[old], reason="member 2 lost its key")
    mine(w3, dao.voting_delay + 1)
    gov.cast_vote(member_keys[0], pid, 1)
    governor = bytes.fromhex(dao.governor[2:])
    b1 = sign_ballot(member_keys[1], chain_id, governor, gov.name(), pid, 1, gov.nonce(members[1][0]))
    relayed = _relay_ballot(apis[1 % len(apis)], b1.encode(), timeout)
    if relayed["status"] != "relayed":
        raise NetworkError(f"the membership ballot was not relayed: {relayed}")
    mine(w3, voting_period + 1)
    exec_receipt = gov.execute(deployer_key, pid)
    after = {members[0][0]: 1, members[1][0]: 1, new: 1}
    shown = []
    for api in apis:
        wait_for(lambda api=api: _members_on(api, dao.executor) == after, timeout,
                 f"{api} to index the new membership")  # fmt: skip
        shown.append(wait_for(
            lambda api=api: (p := httpx.get(f"{api}/v1/gov/proposals/{pid}", timeout=5).json())["state"] == "Executed"
            and p["appliedMembership"] and p,
            timeout, f"{api} to show the executed membership proposal",
        ))  # fmt: skip
    progress(f"proposal {pid} replaced {old} by {new}; every node shows the new membership")

    effective_at = now - 600
    later, _ = gov.propose_revocation(member_keys[0], subject, key_id, effective_at, "after the replacement")
    mine(w3, dao.voting_delay + 1)
    gov.cast_vote(member_keys[0], later, 1)
    newcomer_ballot = sign_ballot(newcomer_key, chain_id, governor, gov.name(), later, 1, gov.nonce(new))
    counted = _relay_ballot(apis[-1], newcomer_ballot.encode(), timeout)
    removed_ballot = sign_ballot(member_keys[2], chain_id, governor, gov.name(), later, 1, gov.nonce(old))
    refused = _relay_ballot(apis[-1], removed_ballot.encode(), timeout)
    votes = gov.votes(later)
    mine(w3, voting_period + 1)
    state = gov.state(later)
    revoke_receipt = gov.execute(deployer_key, later) if state == "Succeeded" else None
    verdicts = [
        wait_for(
            lambda api=api: (v := key_verdict(api, subject, key_id, now))["status"] == "revoked" and v,
            timeout,
            f"{api} to apply the revocation",
        )
        for api in apis
    ]
    progress(f"revocation {later}: newcomer's ballot {counted['status']}, removed member's {refused['status']}")
    return {
        "dao": dao.to_dict(),
        "membershipProposal": str(pid),
        "membershipExecuteTx": exec_receipt["transactionHash"].to_0x_hex(),
        "removed": old,
        "added": new,
        "nodesShowing": shown,
        "revocationProposal": str(later),
        "newcomerBallot": counted,
        "removedBallot": refused,
        "votes": votes,
        "revocationState": state,
        "revocationTx": None if revoke_receipt is None else revoke_receipt["transactionHash"].to_0x_hex(),
        "verdicts": verdicts,
    }


def _dao_revocation(
    w3: Web3,
    gov: Governance,
    member_keys: Sequence[bytes],
    payer_key: bytes,
    subject: bytes,
    key_id: str,
    effective_at: int,
    voting_delay: int,
    voting_period: int,
    reason: str,
) -> tuple[int, dict[str, Any] | None, str | None]:
    """Propose (without the client's early check), pass with every member's direct vote, execute:
    (proposal id, execute receipt or None, the contract error if the execution reverted)."""
    pid, _ = gov.propose_revocation(member_keys[0], subject, key_id, effective_at, reason, check_subject=False)
    mine(w3, voting_delay + 1)
    for key in member_keys:
        gov.cast_vote(key, pid, 1)
    mine(w3, voting_period + 1)
    try:
        return pid, gov.execute(payer_key, pid), None
    except GovernanceRefused as exc:
        return pid, None, str(exc.details.get("error"))


def run_governor_move(
    rpc_url: str,
    registry: str,
    apis: Sequence[str],
    *,
    deployer_key: bytes,
    member_keys: Sequence[bytes],
    chain_id: int = 31337,
    voting_period: int = 10,
    timeout: float = 60.0,
    progress: Callable[[str], None] = lambda _s: None,
) -> dict[str, Any]:
    """A subject moves from DAO A to DAO B in a rotation (protocol 2, ADR 0028 section 8), anchored
    directly; then DAO A's revocation reverts on-chain (``NotGovernor``) and DAO B's executes, with
    a ballot relayed by a node that learnt of DAO B from the rotation, and every node applies it.

    ``member_keys``: members of both DAOs; each votes directly (they need ETH) except member 1 on
    DAO B's proposal, who signs a ballot that ``apis[1]`` relays.
    """
    w3 = connect(rpc_url)
    domain = Domain(chain_id, bytes.fromhex(registry.removeprefix("0x")))
    members = [(address_of(k), 1) for k in member_keys]
    tag = secrets.token_hex(3)
    dao_a = deploy_dao(w3, deployer_key, registry, members, name=f"DAO A {tag}", voting_period=voting_period)
    dao_b = deploy_dao(w3, deployer_key, registry, members, name=f"DAO B {tag}", voting_period=voting_period)
    now = int(w3.eth.get_block("latest")["timestamp"])
    key_id = f"svc-move-{tag}"
    controller, successor = secrets.token_bytes(32), secrets.token_bytes(32)
    key = PublishedKey(key_id, "Ed25519", secrets.token_bytes(32), ("sig",), now - 3600, 0)
    inception = builder.inception(
        now - 3600, [address_of_private_key(controller)], 1, next_controllers=[address_of_private_key(successor)],
        keys=[key], governor=bytes.fromhex(dao_a.executor[2:]),
    )  # fmt: skip
    subject = event_digest(domain, inception)
    sid = "0x" + subject.hex()
    contract = w3.eth.contract(address=Web3.to_checksum_address(registry), abi=load("KeyRegistry").abi)

    def submit_and_anchor(signed: Any, what: str) -> None:
        resp = httpx.post(f"{apis[0]}/v1/events", json=event_to_obj(signed), timeout=10)
        if resp.status_code != 200:
            raise NetworkError(f"{apis[0]} refused the {what}: {resp.text[:200]}")
        name, args = call_for(signed)
        transact(w3, deployer_key, getattr(contract.functions, name)(*args), f"anchor {what}")

    submit_and_anchor(builder.sign_event(domain, inception, [controller]), "inception")
    # The rotation names DAO B (the controllers' decision); the next set is the pre-committed one.
    rotation = builder.rotation(
        subject, 1, subject, now - 1800, [address_of_private_key(successor)], 1,
        [address_of_private_key(secrets.token_bytes(32))], governor=bytes.fromhex(dao_b.executor[2:]),
    )  # fmt: skip
    submit_and_anchor(builder.sign_event(domain, rotation, [successor]), "rotation")
    for api in apis:
        wait_for(
            lambda api=api: httpx.get(f"{api}/v1/subjects/{sid}", timeout=5).json()["seq"] == 1, timeout,
            f"{api} to receive the rotation",
        )  # fmt: skip
    progress(f"subject {sid[:18]}… moved from {dao_a.executor} to {dao_b.executor} (rotation anchored)")

    effective_at = now - 600
    gov_a, gov_b = Governance(w3, dao_a.governor), Governance(w3, dao_b.governor)
    try:
        gov_a.propose_revocation(member_keys[0], subject, key_id, effective_at, "old DAO")
        early_refusal = None
    except GovernanceRefused as exc:
        early_refusal = str(exc.details.get("error"))
    pid_a, receipt_a, error_a = _dao_revocation(
        w3, gov_a, member_keys, deployer_key, subject, key_id, effective_at, dao_a.voting_delay, voting_period,
        "the old DAO tries",
    )  # fmt: skip
    progress(f"DAO A's proposal {pid_a}: execution {'reverted ' + str(error_a) if error_a else 'succeeded'}")

    pid_b, _ = gov_b.propose_revocation(member_keys[0], subject, key_id, effective_at, "the new DAO revokes")
    mine(w3, dao_b.voting_delay + 1)
    governor_b = bytes.fromhex(dao_b.governor[2:])
    relay_api = apis[1 % len(apis)]
    wait_for(
        lambda: httpx.get(f"{relay_api}/v1/gov/daos/{dao_b.executor}", timeout=5).status_code == 200,
        timeout,
        f"{relay_api} to recognise DAO B (named by the rotation)",
    )
    b = sign_ballot(member_keys[1], chain_id, governor_b, gov_b.name(), pid_b, 1, gov_b.nonce(members[1][0]))
    relayed = _relay_ballot(relay_api, b.encode(), timeout)
    for k in [member_keys[0], *member_keys[2:]]:
        gov_b.cast_vote(k, pid_b, 1)
    mine(w3, voting_period + 1)
    receipt_b = gov_b.execute(deployer_key, pid_b)
    verdicts = [
        wait_for(
            lambda api=api: (v := key_verdict(api, subject, key_id, now))["status"] == "revoked" and v,
            timeout,
            f"{api} to apply DAO B's revocation",
        )
        for api in apis
    ]
    before = [key_verdict(api, subject, key_id, effective_at - 1) for api in apis]
    progress(f"DAO B's proposal {pid_b} executed; every node reports {key_id} revoked since {effective_at}")
    return {
        "subject": sid,
        "keyId": key_id,
        "effectiveAt": effective_at,
        "daoA": dao_a.to_dict(),
        "daoB": dao_b.to_dict(),
        "earlyRefusalA": early_refusal,
        "proposalA": str(pid_a),
        "executeErrorA": error_a,
        "executedA": receipt_a is not None,
        "proposalB": str(pid_b),
        "ballotB": relayed,
        "executeTxB": receipt_b["transactionHash"].to_0x_hex(),
        "verdicts": verdicts,
        "justBefore": before,
    }
