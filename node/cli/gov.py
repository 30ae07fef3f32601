"""``keyreg gov deploy|propose-revocation|propose-membership|members|vote|submit-ballot|status|queue|execute``.

Chain access: ``--rpc`` (default: ``[chain] rpc_url`` of the data dir). Which DAO: ``--governor``,
else the DAO file written by ``gov deploy`` (``--dao``, default ``<data-dir>/gov/dao.json``).
Signing keys: ``--key-file`` (a file holding a hex private key, or an Ethereum V3 keyfile unlocked
with KEYREG_PASSWORD / --password-file), else the hex key in ``KEYREG_GOV_KEY``. Keys are never
printed. Every command prints a readable summary, or one JSON document with ``--json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..core.errors import ConfigError
from . import app as root
from .common import (
    DEFAULT_DATA_DIR,
    DataDirOpt,
    JsonOpt,
    NodeClient,
    NodeOpt,
    PasswordFileOpt,
    err_console,
    handles_errors,
    load,
    out_console,
    parse_time,
    print_json,
)

if TYPE_CHECKING:
    from ..gov.ballots import Ballot
    from ..gov.contracts import Governance

gov_app = typer.Typer(
    help="DAO governance: deploy a DAO, propose and vote on revocations and on its own membership.",
    no_args_is_help=True,
)
root.add_typer(gov_app, name="gov")

RpcOpt = Annotated[str | None, typer.Option("--rpc", envvar="KEYREG_CHAIN_RPC_URL", help="Ethereum JSON-RPC URL.")]
DaoOpt = Annotated[
    Path | None, typer.Option("--dao", help="DAO file from `gov deploy` (default <data-dir>/gov/dao.json).")
]
GovernorOpt = Annotated[str | None, typer.Option("--governor", help="Governor address (overrides --dao).")]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-file", help="Signing key: hex private key file or V3 keyfile (else KEYREG_GOV_KEY).", dir_okay=False
    ),
]
ProposalArg = Annotated[str, typer.Argument(help="Proposal id (decimal).")]


def _say(text: str) -> None:
    err_console.print(f"[green]✓[/] {text}", highlight=False)


def _rpc(data_dir: Path, rpc: str | None) -> str:
    url = rpc or load(data_dir).chain.rpc_url
    if not url:
        raise ConfigError("no RPC endpoint: pass --rpc URL or set [chain] rpc_url")
    return url


def _governance(data_dir: Path, rpc: str | None, address: str) -> Governance:
    """The DAO's governor contract at ``address``, over the data dir's (or --rpc) endpoint."""
    from ..gov.contracts import Governance, connect

    return Governance(connect(_rpc(data_dir, rpc)), address)


def _dao_path(data_dir: Path, dao: Path | None) -> Path:
    return dao or data_dir / "gov" / "dao.json"


def _governor(data_dir: Path, dao: Path | None, governor: str | None) -> tuple[str, int]:
    """(governor address, block to search proposals from)."""
    if governor:
        return governor, 0
    path = _dao_path(data_dir, dao)
    if not path.exists():
        raise ConfigError(f"which DAO? pass --governor ADDRESS or --dao FILE ({path} does not exist)")
    from ..gov.contracts import DaoDeployment

    d = DaoDeployment.read(path)
    return d.governor, d.block


def _key(key_file: Path | None, password_file: Path | None) -> bytes:
    from ..gov.contracts import private_key_of

    if key_file is None:
        env = os.environ.get("KEYREG_GOV_KEY")
        if not env:
            raise ConfigError("no signing key: pass --key-file FILE or set KEYREG_GOV_KEY")
        return private_key_of(env)
    try:
        text = key_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {key_file}: {exc.strerror}") from None
    if not text.startswith("{"):
        return private_key_of(text)
    from eth_keyfile.keyfile import decode_keyfile_json

    from ..keys.keystore import resolve_password

    password = resolve_password(password_file)
    try:
        return bytes(decode_keyfile_json(json.loads(text), password.reveal()))
    except ValueError:
        raise ConfigError(f"cannot unlock {key_file}: wrong password or damaged keyfile") from None


def _pid(raw: str) -> int:
    if not raw.isdigit():
        raise ConfigError(f"a proposal id is a decimal number, got {raw!r}")
    return int(raw)


def _tx(receipt: dict[str, Any]) -> dict[str, Any]:
    return {"txHash": receipt["transactionHash"].to_0x_hex(), "block": int(receipt["blockNumber"])}


def _member(text: str) -> tuple[str, int]:
    address, _, weight = text.partition(":")
    if not address.startswith("0x") or len(address) != 42:
        raise ConfigError(f"--member is 0xADDRESS[:WEIGHT], got {text!r}")
    if weight and not weight.isdigit():
        raise ConfigError(f"member weight must be a positive integer, got {weight!r}")
    return address, int(weight or 1)


@gov_app.command("deploy")
@handles_errors
def deploy(
    member: Annotated[list[str], typer.Option("--member", "-m", help="Member 0xADDRESS[:WEIGHT] (repeatable).")],
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    rpc: RpcOpt = None,
    registry: Annotated[str | None, typer.Option(help="KeyRegistry address (default: [network] registry).")] = None,
    name: Annotated[str, typer.Option(help="DAO name (the governor's EIP-712 domain name).")] = "keyreg DAO",
    voting_delay: Annotated[int, typer.Option(help="Blocks between proposal and voting.")] = 1,
    voting_period: Annotated[int, typer.Option(help="Blocks of voting.")] = 50,
    quorum: Annotated[int, typer.Option(help="Quorum, percent of memberships (for + abstain).")] = 67,
    threshold: Annotated[int, typer.Option(help="Memberships needed to propose.")] = 1,
    timelock_delay: Annotated[
        int | None, typer.Option(help="Seconds passed proposals wait in a TimelockController (default: none).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the DAO file (default <data-dir>/gov/dao.json).")
    ] = None,
    key_file: KeyFileOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a DAO (membership token + governor [+ timelock]) for the registry; write its DAO file.

    Subjects that want this DAO to be able to revoke their keys name the printed *executor*
    address at inception (`keyreg subject create --governor ADDRESS`).
    """
    from ..gov.contracts import connect, deploy_dao

    config = load(data_dir)
    key = _key(key_file, password_file)
    w3 = connect(_rpc(data_dir, rpc))
    d = deploy_dao(
        w3, key, registry or config.network.registry, [_member(m) for m in member], name=name,
        voting_delay=voting_delay, voting_period=voting_period, quorum_percent=quorum,
        proposal_threshold=threshold, timelock_delay=timelock_delay, progress=(lambda _s: None) if as_json else _say,
    )  # fmt: skip
    path = out or _dao_path(data_dir, None)
    d.save(path)
    if as_json:
        print_json({**d.to_dict(), "file": str(path)})
        return
    out_console.print(f"DAO [bold]{d.name}[/] deployed; DAO file {path}", highlight=False)
    out_console.print(f"  executor (name it as a subject's governor): [bold]{d.executor}[/]", highlight=False)


@gov_app.command("propose-revocation")
@handles_errors
def propose_revocation(
    subject: Annotated[str, typer.Option(help="Subject id (0x + 64 hex).")],
    key_id: Annotated[str | None, typer.Option(help="Key id to revoke.")] = None,
    whole_subject: Annotated[bool, typer.Option(help="Revoke the whole subject instead of one key.")] = False,
    effective_at: Annotated[str, typer.Option(help="Revoked from: now, -2h, unix seconds, ISO 8601.")] = "now",
    reason: Annotated[str, typer.Option(help="Why (goes in the description; its hash on-chain).")] = "",
    evidence: Annotated[
        Path | None, typer.Option(help="Evidence file: its keccak256 becomes the reason hash.", exists=True)
    ] = None,
    salt: Annotated[str, typer.Option(help="Makes the proposal id differ from an earlier identical one.")] = "",
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    rpc: RpcOpt = None,
    dao: DaoOpt = None,
    governor: GovernorOpt = None,
    key_file: KeyFileOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Propose that the DAO revoke a key (or the whole subject) of a subject that named it."""
    from ..core.hashing import keccak

    if (key_id is None) == (not whole_subject):
        raise ConfigError("pass exactly one of --key-id KID or --whole-subject")
    raw = subject.removeprefix("0x")
    if len(raw) != 64:
        raise ConfigError("--subject is 0x followed by 64 hex digits")
    sid = bytes.fromhex(raw)
    when = parse_time(effective_at)
    assert when is not None
    reason_hash = keccak(evidence.read_bytes()) if evidence else None
    address, _ = _governor(data_dir, dao, governor)
    gov = _governance(data_dir, rpc, address)
    pid, receipt = gov.propose_revocation(
        _key(key_file, password_file), sid, key_id or "", when, reason, reason_hash=reason_hash, salt=salt
    )
    info = {"proposalId": str(pid), "governor": gov.address, "state": gov.state(pid), **_tx(receipt)}
    info.update(votingStarts=gov.snapshot(pid) + 1, votingEnds=gov.deadline(pid))
    if as_json:
        print_json(info)
        return
    what = f"key {key_id}" if key_id else "the whole subject"
    out_console.print(f"proposal [bold]{pid}[/] to revoke {what} of 0x{raw[:16]}… from {when}", highlight=False)
    out_console.print(
        f"  {info['state']}; voting in blocks {info['votingStarts']}..{info['votingEnds']} (tx {info['txHash']})",
        highlight=False,
    )


@gov_app.command("propose-membership")
@handles_errors
def propose_membership(
    add: Annotated[list[str] | None, typer.Option("--add", help="New member 0xADDRESS[:WEIGHT] (repeatable).")] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="Member 0xADDRESS to remove (repeatable).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why (goes in the description).")] = "",
    salt: Annotated[str, typer.Option(help="Makes the proposal id differ from an earlier identical one.")] = "",
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    rpc: RpcOpt = None,
    dao: DaoOpt = None,
    governor: GovernorOpt = None,
    key_file: KeyFileOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Propose that the DAO change its own membership: removals first, then additions, in one vote
    (replacing a member who lost its key is `--remove OLD --add NEW`)."""
    adds = [_member(m) for m in add or []]
    removes = [_member(m)[0] for m in remove or []]
    if not adds and not removes:
        raise ConfigError("pass at least one --add 0xADDRESS[:WEIGHT] or --remove 0xADDRESS")
    address, _ = _governor(data_dir, dao, governor)
    gov = _governance(data_dir, rpc, address)
    pid, receipt = gov.propose_membership(_key(key_file, password_file), adds, removes, reason, salt)
    info = {"proposalId": str(pid), "governor": gov.address, "state": gov.state(pid), **_tx(receipt)}
    info.update(votingStarts=gov.snapshot(pid) + 1, votingEnds=gov.deadline(pid))
    info["changes"] = [{"action": "remove", "member": m} for m in removes] + [
        {"action": "add", "member": m, "weight": w} for m, w in adds
    ]
    if as_json:
        print_json(info)
        return
    out_console.print(f"proposal [bold]{pid}[/] to change the DAO's membership:", highlight=False)
    for c in info["changes"]:
        weight = f" (weight {c['weight']})" if "weight" in c else ""
        out_console.print(f"  {c['action']} {c['member']}{weight}", highlight=False)
    out_console.print(
        f"  {info['state']}; voting in blocks {info['votingStarts']}..{info['votingEnds']} (tx {info['txHash']})",
        highlight=False,
    )


@gov_app.command("members")
@handles_errors
def members(
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    rpc: RpcOpt = None,
    dao: DaoOpt = None,
    governor: GovernorOpt = None,
    from_node: Annotated[bool, typer.Option("--from-node", help="Ask the node's API instead of the chain.")] = False,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The DAO's current members and weights (from its token's logs and balances, or the node's index)."""
    address, start = _governor(data_dir, dao, governor)
    if from_node:
        client = NodeClient.for_config(load(data_dir), node)
        try:
            body = client.get(f"/v1/gov/daos/{address}")
        finally:
            client.close()
        listed = [(m["address"], int(m["weight"])) for m in body["members"]]
    else:
        listed = sorted(_governance(data_dir, rpc, address).members(start).items(), key=lambda kv: kv[0].lower())
    info = {"governor": address, "members": [{"address": a, "weight": w} for a, w in listed]}
    if as_json:
        print_json(info)
        return
    out_console.print(f"DAO {address}: {len(listed)} members, weight {sum(w for _, w in listed)}", highlight=False)
    for a, w in listed:
        out_console.print(f"  {a}  {w}", highlight=False)


@gov_app.command("vote")
@handles_errors
def vote(
    proposal: ProposalArg,
    support: Annotated[str, typer.Option(help="for, against or abstain.")] = "for",
    reason: Annotated[str, typer.Option(help="Reason recorded with a direct vote.")] = "",
    by_sig: Annotated[bool, typer.Option("--by-sig", help="Sign a ballot offline instead of sending a tx.")] = False,
    out: Annotated[Path | None, typer.Option(help="With --by-sig: write the ballot to this file.")] = None,
    submit: Annotated[bool, typer.Option(help="With --by-sig: submit the ballot to a node (--node).")] = False,
    nonce: Annotated[int | None, typer.Option(help="With --by-sig and no chain access: the voter's nonce.")] = None,
    name: Annotated[str | None, typer.Option(help="With --by-sig and no chain access: the DAO's name.")] = None,
    chain_id: Annotated[int | None, typer.Option(help="With --by-sig and no chain access: the chain id.")] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    rpc: RpcOpt = None,
    dao: DaoOpt = None,
    governor: GovernorOpt = None,
    node: NodeOpt = None,
    key_file: KeyFileOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Vote on a proposal: directly (you pay gas), or --by-sig (a signed ballot a node relays for free).

    A ballot can be signed fully offline with --nonce, --name and --chain-id; otherwise they are
    read from the chain. It is written to --out and/or submitted to a node with --submit.
    """
    from ..gov.ballots import sign_ballot
    from ..gov.contracts import Governance, address_of, connect, parse_support
    from ..gov.tx import SUPPORT_NAMES

    pid = _pid(proposal)
    code = parse_support(support)
    key = _key(key_file, password_file)
    address, _ = _governor(data_dir, dao, governor)
    if not by_sig:
        gov = _governance(data_dir, rpc, address)
        receipt = gov.cast_vote(key, pid, code, reason)
        cast = {"proposalId": str(pid), "voter": address_of(key), "support": SUPPORT_NAMES[code], **_tx(receipt)}
        cast["votes"] = gov.votes(pid)
        if as_json:
            print_json(cast)
        else:
            v = cast["votes"]
            out_console.print(
                f"voted {cast['support']} on {pid} (tx {cast['txHash']}); tally for {v['for']}, "
                f"against {v['against']}, abstain {v['abstain']}",
                highlight=False,
            )
        return
    if out is None and not submit:
        raise ConfigError("--by-sig needs --out FILE and/or --submit (to a node)")
    if nonce is None or name is None or chain_id is None:
        w3 = connect(_rpc(data_dir, rpc))
        gov = Governance(w3, address)
        nonce = gov.nonce(address_of(key)) if nonce is None else nonce
        name = gov.name() if name is None else name
        chain_id = int(w3.eth.chain_id) if chain_id is None else chain_id
    ballot = sign_ballot(key, chain_id, bytes.fromhex(address[2:]), name, pid, code, nonce)
    info: dict[str, Any] = {"ballot": ballot.to_obj()}
    if out is not None:
        out.write_text(json.dumps(ballot.to_obj(), indent=2) + "\n")
        info["file"] = str(out)
    if submit:
        info["relay"] = _submit(data_dir, node, ballot)
    if as_json:
        print_json(info)
        return
    out_console.print(f"signed ballot: {ballot.describe()} (nonce {nonce})", highlight=False)
    if out is not None:
        out_console.print(f"  written to {out}", highlight=False)
    if submit:
        _print_relay(info["relay"])


def _submit(data_dir: Path, node: str | None, ballot: Ballot, wait_s: float = 30.0) -> dict[str, Any]:
    """POST the ballot to a node and wait (bounded) for its relay result."""
    client = NodeClient.for_config(load(data_dir), node)
    try:
        result: dict[str, Any] = client.request("POST", "/v1/gov/ballots", content=ballot.encode())
        deadline = time.monotonic() + wait_s
        while result["status"] == "queued" and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the node's relay record with a deadline
            result = client.get(f"/v1/gov/ballots/{result['id']}")
        return result
    finally:
        client.close()


def _print_relay(result: dict[str, Any]) -> None:
    status = result["status"]
    if status == "relayed":
        out_console.print(f"  relayed by {result['relayer']} in tx {result['txHash']} (block {result['block']})")
    elif result.get("error"):
        out_console.print(f"  {status}: {result['error'].get('message', '')}", highlight=False)
    else:
        out_console.print(f"  {status}", highlight=False)


@gov_app.command("submit-ballot")
@handles_errors
def submit_ballot(
    ballot_file: Annotated[Path, typer.Argument(help="A ballot written by `gov vote --by-sig --out`.", exists=True)],
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hand a signed ballot to a node, which relays it (paying the gas) and gossips it."""
    from ..gov.ballots import decode_ballot

    ballot = decode_ballot(ballot_file.read_bytes())
    result = _submit(data_dir, node, ballot)
    if as_json:
        print_json(result)
        return
    out_console.print(f"ballot: {ballot.describe()}", highlight=False)
    _print_relay(result)


@gov_app.command("status")
@handles_errors
def status(
    proposal: Annotated[str | None, typer.Argument(help="Proposal id (default: list all).")] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    rpc: RpcOpt = None,
    dao: DaoOpt = None,
    governor: GovernorOpt = None,
    from_node: Annotated[bool, typer.Option("--from-node", help="Ask the node's API instead of the chain.")] = False,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """State, tallies and quorum of one proposal, or of every proposal of the DAO."""
    if from_node:
        client = NodeClient.for_config(load(data_dir), node)
        try:
            path = f"/v1/gov/proposals/{_pid(proposal)}" if proposal else "/v1/gov/proposals"
            body = client.get(path, governor=governor)
        finally:
            client.close()
        items = [body] if proposal else body["proposals"]
    else:
        address, start = _governor(data_dir, dao, governor)
        gov = _governance(data_dir, rpc, address)
        pids = [_pid(proposal)] if proposal else [p.proposal_id for p in gov.proposals(start)]
        items = [gov.summary(pid) for pid in pids]
    if as_json:
        print_json(items[0] if proposal else items)
        return
    if not items:
        out_console.print("no proposals")
    for p in items:
        v = p["votes"]
        quorum = p.get("quorum")
        out_console.print(
            f"proposal {p['proposalId']}: [bold]{p['state']}[/]  for {v['for']} · against {v['against']} · "
            f"abstain {v['abstain']}  quorum {quorum if quorum is not None else '-'}",
            highlight=False,
        )
        for c in p.get("membershipChanges", []):  # shown by the node's index (--from-node)
            weight = f" (weight {c['weight']})" if "weight" in c else ""
            out_console.print(f"  membership: {c['action']} {c['member']}{weight}", highlight=False)


@gov_app.command("queue")
@handles_errors
def queue(
    proposal: ProposalArg,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    rpc: RpcOpt = None,
    dao: DaoOpt = None,
    governor: GovernorOpt = None,
    key_file: KeyFileOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a succeeded proposal in the DAO's timelock (timelocked DAOs only)."""
    _run_step("queue", proposal, data_dir, rpc, dao, governor, key_file, password_file, as_json)


@gov_app.command("execute")
@handles_errors
def execute(
    proposal: ProposalArg,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    rpc: RpcOpt = None,
    dao: DaoOpt = None,
    governor: GovernorOpt = None,
    key_file: KeyFileOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Execute a passed proposal: the registry records its revocations and every node applies them;
    its membership changes take effect on the DAO's token from the next proposal's snapshot."""
    _run_step("execute", proposal, data_dir, rpc, dao, governor, key_file, password_file, as_json)


def _run_step(
    step: str,
    proposal: str,
    data_dir: Path,
    rpc: str | None,
    dao: Path | None,
    governor: str | None,
    key_file: Path | None,
    password_file: Path | None,
    as_json: bool,
) -> None:
    pid = _pid(proposal)
    address, start = _governor(data_dir, dao, governor)
    gov = _governance(data_dir, rpc, address)
    key = _key(key_file, password_file)
    receipt = gov.queue(key, pid, start) if step == "queue" else gov.execute(key, pid, start)
    info = {"proposalId": str(pid), "state": gov.state(pid), **_tx(receipt)}
    if step == "queue":
        info["eta"] = gov.eta(pid)
    if as_json:
        print_json(info)
        return
    extra = f", executable after {info['eta']}" if step == "queue" else ""
    out_console.print(f"proposal {pid} {info['state']} (tx {info['txHash']}){extra}", highlight=False)
