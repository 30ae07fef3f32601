"""``keyreg init``: create a data directory, its config, admin token and keystore, and the subject's
controller keys *outside* it (docs/operations.md "Custody", ADR 0028 section 11).

Default (operator custody): the node's keystore holds only the **operator key** (a 1-of-1
operator set scoped to the scheduler's purposes, with maxValidity and maxKeys that fit the
scheduled rotation) and the first service key. The controllers (k of n) and their pre-committed
next generation are either existing wallets (``--controller ADDR``: the inception is written as
a proposal for them to sign) or fresh V3 keyfiles written to a custody directory outside the data
dir, one per person, each under its own password; init signs the inception with them and tells
the operator to move that directory off the machine.

``--all-on-node`` keeps the single-machine development mode: controllers and next generation in
the node's keystore, with a warning.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..core.errors import ConfigError
from . import app as root
from .common import (
    DEFAULT_DATA_DIR,
    DataDirOpt,
    JsonOpt,
    PasswordFileOpt,
    err_console,
    handles_errors,
    parse_duration,
    print_json,
)

if TYPE_CHECKING:
    from ..config import Config
    from ..keys.keystore import Password

log = logging.getLogger("keyreg.init")

ALL_ON_NODE_WARNING = (
    "all-on-node custody: the controllers AND their pre-committed next generation are in this node's "
    "keystore, under one password. Whoever takes this machine takes the subject (pre-rotation and k-of-n "
    "protect nothing). For development only; use the default custody for anything real (docs/operations.md, Custody)."
)
INCEPTION_FILE = "inception.json"  # the controller-signed inception (operator custody), public
PROPOSAL_FILE = "inception.proposal.json"  # the inception awaiting wallet signatures, public


@dataclass
class OffNodeCustody:
    """How ``init`` places the subject's keys when the node holds only its operator key.

    Controllers: ``controller_addresses`` (existing wallets) or ``controllers`` fresh keyfiles in
    ``custody_dir``, one per entry of ``controller_passwords``. Next generation:
    ``next_addresses`` or ``next_commitment``, else fresh keyfiles (``next_passwords``) for cold
    storage. Every password must differ from every other and from the node's.
    """

    custody_dir: Path | None = None
    controllers: int = 1
    threshold: int = 1
    controller_addresses: tuple[bytes, ...] = ()
    controller_passwords: list[Password] = field(default_factory=list, repr=False)
    next_addresses: tuple[bytes, ...] = ()
    next_commitment: bytes | None = None
    next_passwords: list[Password] = field(default_factory=list, repr=False)
    purposes: tuple[str, ...] | None = None  # default: [rotation] purposes
    max_validity: int | None = None  # default: fits the [rotation] schedule
    max_keys: int | None = None
    governor: bytes | None = None
    metadata: str = ""
    alg: str | None = None  # first service key; default: [rotation] algorithm
    key_id: str | None = None
    # An existing subject: only a fresh operator key (for the controllers to delegate to, e.g. after
    # the node was taken); no controllers, no inception.
    subject: bytes | None = None


def default_custody_dir(data_dir: Path) -> Path:
    """``<data dir>-custody`` beside the data dir: outside it, to be moved off the machine."""
    d = data_dir.absolute()
    return d.with_name(d.name.lstrip(".") + "-custody")


def _inside(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a.is_relative_to(b)


def _check_passwords(node: Password, people: list[Password]) -> None:
    """Refuse a password used twice (two keyfiles under one secret, or a keyfile under the node's)."""
    seen = [node.reveal()]
    for p in people:
        if any(hmac.compare_digest(p.reveal(), q) for q in seen):
            raise ConfigError(
                "two keys would share a password (or one would share the node's keystore password): each "
                "controller and next-generation keyfile needs its own, held by its own person"
            )
        seen.append(p.reveal())


def _configure(
    data_dir: Path, chain_id: int | None, registry: str | None, api_port: int | None, admin_port: int | None
) -> Config:
    from ..config import Config, NetworkConfig

    cfg = Config(data_dir=data_dir)
    net = cfg.network
    if registry is not None and not (registry.startswith("0x") and len(registry) == 42):
        raise ConfigError(f"--registry must be a 0x-prefixed 20-byte address, got {registry!r}")
    return replace(
        cfg,
        network=NetworkConfig(
            chain_id=chain_id if chain_id is not None else net.chain_id,
            registry=(registry or net.registry).lower(),
        ),
        api=replace(
            cfg.api,
            port=api_port if api_port is not None else cfg.api.port,
            admin_port=admin_port if admin_port is not None else cfg.api.admin_port,
        ),
    )


def init_data_dir(
    data_dir: Path,
    password: Password,
    controllers: int = 1,
    threshold: int = 1,
    chain_id: int | None = None,
    registry: str | None = None,
    api_port: int | None = None,
    admin_port: int | None = None,
    show_progress: bool = False,
    custody: OffNodeCustody | None = None,
) -> dict[str, Any]:
    """Create everything a node needs in ``data_dir``; returns a summary (no secrets).

    ``custody`` None: all-on-node (the controllers in the node's keystore: development, harnesses
    that sign with the keystore). Otherwise operator custody as ``custody`` says (what ``keyreg
    init`` does by default).
    """
    from ..keys.keystore import Keystore, write_private_text

    if (data_dir / "keystore" / "keystore.json").exists():
        raise ConfigError(f"{data_dir} is already initialised (it holds a keystore); use another --data-dir")
    cfg = _configure(data_dir, chain_id, registry, api_port, admin_port)
    plan = _plan_off_node(data_dir, password, cfg, custody) if custody is not None else None
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    config_path = data_dir / "keyreg.toml"
    if not config_path.exists():
        config_path.write_text(cfg.to_toml())
    token_path = data_dir / "admin.token"
    if not token_path.exists():
        write_private_text(token_path, secrets.token_urlsafe(32) + "\n")
    base = {
        "dataDir": str(data_dir),
        "config": str(config_path),
        "adminToken": str(token_path),
        "keystore": str(data_dir / "keystore"),
        "chainId": cfg.network.chain_id,
        "registry": cfg.network.registry,
    }
    if plan is not None:
        return {**base, **plan.run(data_dir, password, cfg, show_progress)}
    from ..core.builder import controller_set
    from ..core.eip712 import controller_commitment

    log.warning("%s", ALL_ON_NODE_WARNING)
    if show_progress:
        with _progress() as progress:
            task = progress.add_task("keys", total=2 * controllers)
            ks = Keystore.create(
                data_dir / "keystore", password, controllers, threshold, lambda: progress.advance(task)
            )
    else:
        ks = Keystore.create(data_dir / "keystore", password, controllers, threshold)
    current = ks.controller_addresses(0)
    nxt = ks.controller_addresses(1)
    assert controller_set(ks.controller_secrets(0)) == current
    return {
        **base,
        "mode": ks.mode,
        "roles": list(ks.roles),
        "warning": ALL_ON_NODE_WARNING,
        "threshold": threshold,
        "controllers": ["0x" + a.hex() for a in current],
        "nextControllers": ["0x" + a.hex() for a in nxt],
        "nextCommitment": "0x" + controller_commitment(nxt, threshold).hex(),
    }


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]creating keyfiles"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


@dataclass
class _OffNodePlan:
    """An :class:`OffNodeCustody` checked against the config, before anything is written."""

    custody: OffNodeCustody
    custody_dir: Path | None
    purposes: tuple[str, ...]
    max_validity: int
    max_keys: int
    alg: str

    def run(self, data_dir: Path, password: Password, cfg: Config, show_progress: bool) -> dict[str, Any]:
        from ..core import builder
        from ..core.codec import event_to_obj
        from ..core.eip712 import controller_commitment, event_digest
        from ..core.records import ZERO20
        from ..keys.keystore import Keystore, write_keyfile
        from ..keys.operations import build_inception, operator_set_of
        from ..keys.service_keys import ServiceKey

        c = self.custody
        if c.subject is not None:
            return self._operator_only(data_dir, password, c.subject)
        files: list[dict[str, Any]] = []
        ctrl_secrets: list[bytes] = []
        total = len(c.controller_passwords) + len(c.next_passwords)
        progress = _progress() if show_progress and total else None
        task = progress.add_task("keys", total=total) if progress is not None else None
        try:
            if progress is not None:
                progress.start()

            def keyfile(role: str, i: int, pw: Password) -> bytes:
                assert self.custody_dir is not None
                secret = os.urandom(32)
                path = self.custody_dir / f"{role}-{i}.json"
                addr = write_keyfile(path, secret, pw)
                files.append({"role": role, "index": i, "address": "0x" + addr.hex(), "path": str(path)})
                if progress is not None and task is not None:
                    progress.advance(task)
                return secret

            if c.controller_addresses:
                controllers = tuple(sorted(c.controller_addresses))
            else:
                ctrl_secrets = [keyfile("controller", i + 1, pw) for i, pw in enumerate(c.controller_passwords)]
                controllers = builder.controller_set(ctrl_secrets)
            if c.next_addresses:
                nxt = controller_commitment(tuple(sorted(c.next_addresses)), c.threshold)
            elif c.next_commitment is not None:
                nxt = c.next_commitment
            else:
                nxt_secrets = [keyfile("next", i + 1, pw) for i, pw in enumerate(c.next_passwords)]
                nxt = controller_commitment(builder.controller_set(nxt_secrets), c.threshold)
                del nxt_secrets  # cold storage: never kept on the node, not even in memory
        finally:
            if progress is not None:
                progress.stop()
        ks = Keystore.create_operator(
            data_dir / "keystore",
            password,
            self.purposes,
            self.max_validity,
            self.max_keys,
            controllers=controllers,
            threshold=c.threshold,
            next_commitment=nxt,
        )
        policy = ks.operator_policy
        assert policy is not None
        now = int(time.time())
        first = ServiceKey.generate(self.alg, c.key_id)
        event = build_inception(
            now,
            controllers,
            c.threshold,
            nxt,
            [first.published(self.purposes, now)],
            c.governor or ZERO20,
            c.metadata,
            operator_set_of(policy),
        )
        subject = event_digest(cfg.domain, event)
        ks.add_service_key(first, self.purposes)
        ks.set_subject(subject)
        out: dict[str, Any] = {
            "mode": ks.mode,
            "roles": list(ks.roles),
            "subject": "0x" + subject.hex(),
            "threshold": c.threshold,
            "controllers": ["0x" + a.hex() for a in controllers],
            "nextCommitment": "0x" + nxt.hex(),
            "operator": policy.to_json(),
            "firstKey": first.key_id,
            "custodyDir": str(self.custody_dir) if files else None,
            "files": files,
        }
        if ctrl_secrets:
            signed = builder.sign_event(cfg.domain, event, ctrl_secrets[: c.threshold])
            del ctrl_secrets
            inception_path = data_dir / INCEPTION_FILE
            inception_path.write_text(json.dumps(event_to_obj(signed), indent=2) + "\n")
            out["inception"] = {"path": str(inception_path), "signed": True}
        else:
            out["inception"] = {"path": str(_write_proposal(data_dir, cfg, event)), "signed": False}
        if files:
            _write_manifest(self.custody_dir, out)
        return out

    def _operator_only(self, data_dir: Path, password: Password, subject: bytes) -> dict[str, Any]:
        """A keystore with a fresh operator key for ``subject``: the node signs nothing until the
        controllers delegate to it (the operator set printed here, exactly)."""
        from ..keys.keystore import Keystore

        ks = Keystore.create_operator(data_dir / "keystore", password, self.purposes, self.max_validity, self.max_keys)
        ks.set_subject(subject)
        policy = ks.operator_policy
        assert policy is not None
        return {
            "mode": ks.mode,
            "roles": list(ks.roles),
            "subject": "0x" + subject.hex(),
            "operator": policy.to_json(),
            "files": [],
            "custodyDir": None,
            "inception": None,
            "delegate": "the controllers delegate to this operator set (keyreg event propose delegation ...)",
        }


def _write_proposal(data_dir: Path, cfg: Config, event: Any) -> Path:
    """The inception as a ceremony proposal for the wallets to sign (``keyreg event sign|attach``)."""
    from ..ceremony.proposal import propose

    path = data_dir / PROPOSAL_FILE
    path.write_text(json.dumps(propose(None, event, cfg.domain).to_obj(), indent=2) + "\n")
    return path


def _write_manifest(custody_dir: Path | None, summary: dict[str, Any]) -> None:
    """custody.json and README.txt beside the keyfiles: who holds what (public facts only)."""
    assert custody_dir is not None
    manifest = {k: summary[k] for k in ("subject", "threshold", "controllers", "nextCommitment", "files")}
    (custody_dir / "custody.json").write_text(json.dumps(manifest, indent=2) + "\n")
    lines = [
        f"keyreg custody for subject {summary['subject']}",
        "",
        "Each keyfile is an Ethereum V3 keyfile under its own password. MOVE THIS DIRECTORY OFF THE NODE:",
        "- give each controller-N.json to its own person (or import it into a hardware-backed wallet);",
        f"  any {summary['threshold']} of them sign rotations, revocations and delegations in a ceremony",
        "  (keyreg event propose / sign / attach / submit, docs/ceremonies.md);",
        "- put each next-N.json in cold storage, apart from the controllers: they are the pre-committed",
        "  next generation, used once, to recover the subject by a rotation.",
        "The node keeps only its operator key (docs/operations.md, Custody).",
    ]
    (custody_dir / "README.txt").write_text("\n".join(lines) + "\n")


def _plan_off_node(data_dir: Path, password: Password, cfg: Config, c: OffNodeCustody) -> _OffNodePlan:
    """Check an off-node custody request completely before anything is written."""
    from ..keys.rotation import RotationPolicy, default_operator_limits, operator_policy_problems
    from ..keys.service_keys import check_alg

    rc = cfg.rotation
    if c.subject is not None:
        if c.controller_addresses or c.controller_passwords or c.next_passwords or c.next_addresses:
            raise ConfigError("--subject makes an operator key for an existing subject: no controller options")
        c.next_commitment = b""
        n = c.threshold = 1
    elif c.controller_addresses:
        n = len(c.controller_addresses)
        if len(set(c.controller_addresses)) != n:
            raise ConfigError("--controller: an address is given twice")
        if c.controller_passwords:
            raise ConfigError("controller passwords are for keyfiles init creates, not for --controller wallets")
    else:
        n = len(c.controller_passwords)
        if n != c.controllers:
            raise ConfigError(f"{c.controllers} controller keyfiles need {c.controllers} passwords, got {n}")
    if not 1 <= c.threshold <= n <= 16:
        raise ConfigError(f"need 1 <= threshold ({c.threshold}) <= controllers ({n}) <= 16")
    generate_next = c.subject is None and not c.next_addresses and c.next_commitment is None
    if c.next_addresses and len(c.next_addresses) < c.threshold:
        raise ConfigError(f"--next-controller: {len(c.next_addresses)} addresses, below the threshold {c.threshold}")
    if generate_next and len(c.next_passwords) != n:
        raise ConfigError(f"{n} next-generation keyfiles need {n} passwords, got {len(c.next_passwords)}")
    if not generate_next and c.next_passwords:
        raise ConfigError("next-generation passwords are for keyfiles init creates")
    _check_passwords(password, [*c.controller_passwords, *c.next_passwords])
    policy = RotationPolicy(rc.rotation_interval_s, rc.overlap_s, rc.publish_ahead_s)
    dv, dk = default_operator_limits(policy.interval, policy.overlap, policy.publish_ahead)
    purposes = tuple(dict.fromkeys(c.purposes or rc.purposes))
    max_validity = c.max_validity if c.max_validity is not None else dv
    max_keys = c.max_keys if c.max_keys is not None else dk
    if not 1 <= len(purposes) <= 16 or max_validity < 1 or not 1 <= max_keys <= 1024:
        raise ConfigError("operator limits: 1-16 purposes, maxValidity >= 1 s, 1 <= maxKeys <= 1024")
    if rc.enabled:
        problems = operator_policy_problems(policy, max_validity, max_keys)
        if problems:
            raise ConfigError("the operator limits cannot carry the [rotation] schedule: " + "; ".join(problems))
    custody_dir = None
    if c.controller_passwords or c.next_passwords:
        custody_dir = (c.custody_dir or default_custody_dir(data_dir)).absolute()
        if _inside(custody_dir, data_dir) or _inside(data_dir, custody_dir):
            raise ConfigError(
                f"the custody directory {custody_dir} must be outside the node's data dir {data_dir} (and not "
                "contain it): the controllers must not be where the node is"
            )
        if custody_dir.exists() and any(custody_dir.iterdir()):
            raise ConfigError(f"the custody directory {custody_dir} exists and is not empty; refusing to mix keys")
    return _OffNodePlan(c, custody_dir, purposes, max_validity, max_keys, check_alg(c.alg or rc.algorithm))


def pending_inception(data_dir: Path) -> Any:
    """The inception ``init`` left for submission (operator custody): the signed event, or, for
    wallets, the proposal once its signatures are attached. Raises a clear error otherwise."""
    from ..core.codec import event_from_obj

    signed_path, proposal_path = data_dir / INCEPTION_FILE, data_dir / PROPOSAL_FILE
    if signed_path.exists():
        return event_from_obj(json.loads(signed_path.read_text()))
    if proposal_path.exists():
        from ..ceremony.proposal import Proposal

        proposal = Proposal.from_obj(json.loads(proposal_path.read_text()))
        if not proposal.complete:
            raise ConfigError(
                f"the inception in {proposal_path} has {len(proposal.signatures)} of {proposal.authority.threshold} "
                "controller signatures: have the controllers sign it (`keyreg event sign` with a keyfile, or "
                f"`keyreg event attach {proposal_path} --signature 0x...` for a wallet's signature)"
            )
        return proposal.signed_event()
    raise ConfigError(f"{data_dir} holds no pending inception: this node's subject was created elsewhere")


def _passwords(files: list[Path] | None, role: str, count: int, as_json: bool) -> list[Password]:
    """One password per keyfile: from the files given, else prompted (each its own, confirmed)."""
    from ..keys.keystore import KeystoreError, Password, resolve_password

    if files:
        return [resolve_password(f) for f in files]
    if count == 0:
        return []
    import sys

    if not sys.stdin.isatty() or as_json:
        raise KeystoreError(
            f"{count} {role} keyfile(s) need one password each: pass --{role}-password-file once per keyfile, "
            f"or run in a terminal to be prompted (or use --controller ADDR for existing wallets)"
        )
    import getpass

    out = []
    for i in range(count):
        first = getpass.getpass(f"password for {role}-{i + 1}.json (its holder's own): ")
        if getpass.getpass("repeat it: ") != first:
            raise KeystoreError("the two passwords differ")
        out.append(Password(first))
    return out


def _address(value: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 20 or not value.startswith("0x"):
        raise ConfigError(f"{what} must be a 0x-prefixed 20-byte address, got {value!r}")
    return raw


@root.command("init")
@handles_errors
def init(
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    controllers: Annotated[
        int | None,
        typer.Option(help="Number of controller keys init generates (n of k-of-n; default 1).", min=1, max=16),
    ] = None,
    threshold: Annotated[int, typer.Option(help="Signatures required (k of k-of-n).", min=1, max=16)] = 1,
    controller: Annotated[
        list[str] | None,
        typer.Option("--controller", help="An existing wallet's address as a controller (repeatable)."),
    ] = None,
    next_controller: Annotated[
        list[str] | None,
        typer.Option("--next-controller", help="Address of the next (pre-committed) generation (repeatable)."),
    ] = None,
    next_commitment: Annotated[
        str | None, typer.Option(help="Commitment to the next generation (0x + 64 hex) instead of addresses.")
    ] = None,
    custody_dir: Annotated[
        Path | None,
        typer.Option(help="Where init writes the controller and next keyfiles (default: <data dir>-custody)."),
    ] = None,
    controller_password_file: Annotated[
        list[Path] | None, typer.Option(help="Password file of one controller keyfile (once per controller).")
    ] = None,
    next_password_file: Annotated[
        list[Path] | None, typer.Option(help="Password file of one next-generation keyfile (once per key).")
    ] = None,
    operator_purpose: Annotated[
        list[str] | None, typer.Option(help="Purpose the operator key may publish (repeatable; default [rotation]'s).")
    ] = None,
    operator_max_validity: Annotated[
        str | None, typer.Option(help="Longest life of an operator-published key (default: fits the schedule).")
    ] = None,
    operator_max_keys: Annotated[
        int | None, typer.Option(help="Most live keys in the operator's scope (default 4).", min=1, max=1024)
    ] = None,
    governor: Annotated[str | None, typer.Option(help="DAO governor allowed to revoke this subject's keys.")] = None,
    metadata: Annotated[str, typer.Option(help="Free-form metadata stored in the inception.")] = "",
    alg: Annotated[str | None, typer.Option(help="Algorithm of the first service key (default [rotation]'s).")] = None,
    key_id: Annotated[str | None, typer.Option(help="Key id of the first service key (default: derived).")] = None,
    all_on_node: Annotated[
        bool, typer.Option("--all-on-node", help="Development: controllers and next generation in the node's keystore.")
    ] = False,
    subject: Annotated[
        str | None,
        typer.Option(help="An existing subject: only a fresh operator key, for the controllers to delegate to."),
    ] = None,
    chain_id: Annotated[int | None, typer.Option(help="Chain id of the network (default: devnet 31337).")] = None,
    registry: Annotated[str | None, typer.Option(help="Registry contract address (default: the devnet's).")] = None,
    api_port: Annotated[int | None, typer.Option(help="Public API port to write into the config.")] = None,
    admin_port: Annotated[int | None, typer.Option(help="Admin API port (loopback) to write into the config.")] = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a data directory: keyreg.toml, admin.token (0600), the node's keystore, and the subject's keys.

    Default custody: the node's keystore holds only the operator key (it can publish service keys
    within limits, and nothing else). The controllers (k of n) and their pre-committed next
    generation are created as separate password-protected keyfiles in --custody-dir (outside the
    data dir: move it off this machine), or are existing wallets (--controller, --next-controller).
    The inception is signed by the controllers here (or written as a proposal for the wallets);
    `keyreg subject create` submits it once the node runs. --all-on-node: everything on the node,
    for development. The node's password comes from --password-file, KEYREG_PASSWORD, or a prompt.
    """
    from ..keys.keystore import resolve_password

    if (data_dir / "keystore" / "keystore.json").exists():  # before asking anyone for a password
        raise ConfigError(f"{data_dir} is already initialised (it holds a keystore); use another --data-dir")
    wallets = tuple(_address(a, "--controller") for a in controller or [])
    n = len(wallets) if wallets else (controllers or 1)
    if wallets and controllers is not None and controllers != len(wallets):
        raise ConfigError(f"--controllers {controllers} but {len(wallets)} --controller addresses")
    if threshold > n:
        raise ConfigError(f"--threshold {threshold} is more than the {n} controllers")
    if all_on_node:
        if wallets or next_controller or next_commitment or controller_password_file or next_password_file:
            raise ConfigError("--all-on-node generates the controllers in the node's keystore: no wallet options")
        password = resolve_password(password_file, confirm=True)
        summary = init_data_dir(
            data_dir, password, n, threshold, chain_id, registry, api_port, admin_port, show_progress=not as_json
        )
        if as_json:
            print_json(summary)
            return
        err_console.print(f"[green]initialised[/] {summary['dataDir']} [bold red](all-on-node)[/]")
        err_console.print(f"[bold yellow]warning:[/] {ALL_ON_NODE_WARNING}")
        err_console.print(f"  network       chainId {summary['chainId']}, registry {summary['registry']}")
        err_console.print(f"  controllers   {threshold} of {', '.join(summary['controllers'])} (in the keystore)")
        err_console.print(f"  next (hashed) {summary['nextCommitment']} (in the keystore)")
        err_console.print(f"  admin token   {summary['adminToken']} (0600; give it to your service)")
        err_console.print("next: [bold]keyreg node run[/] then [bold]keyreg subject create[/]")
        return
    nxt_addrs = tuple(_address(a, "--next-controller") for a in next_controller or [])
    commitment = None
    if next_commitment is not None:
        try:
            commitment = bytes.fromhex(next_commitment.removeprefix("0x"))
        except ValueError:
            commitment = b""
        if len(commitment) != 32:
            raise ConfigError(f"--next-commitment must be 0x + 64 hex digits, got {next_commitment!r}")
    if nxt_addrs and commitment is not None:
        raise ConfigError("give --next-controller or --next-commitment, not both")
    password = resolve_password(password_file, confirm=True)
    if subject is not None:
        sid = bytes.fromhex(subject.removeprefix("0x")) if len(subject) == 66 and subject.startswith("0x") else b""
        if len(sid) != 32:
            raise ConfigError(f"--subject must be 0x + 64 hex digits, got {subject!r}")
        joined = init_data_dir(
            data_dir,
            password,
            chain_id=chain_id,
            registry=registry,
            api_port=api_port,
            admin_port=admin_port,
            custody=OffNodeCustody(
                subject=sid,
                purposes=tuple(operator_purpose) if operator_purpose else None,
                max_validity=parse_duration(operator_max_validity) if operator_max_validity else None,
                max_keys=operator_max_keys,
            ),
        )
        if as_json:
            print_json(joined)
            return
        op = joined["operator"]
        err_console.print(f"[green]initialised[/] {joined['dataDir']}: a fresh operator key for {joined['subject']}")
        err_console.print(f"  operator set  {json.dumps(op)}")
        err_console.print(
            "next: the controllers delegate to exactly this operator set in a ceremony (`keyreg event propose "
            "delegation ...`, docs/ceremonies.md); the node signs nothing until then"
        )
        return
    custody = OffNodeCustody(
        custody_dir=custody_dir,
        controllers=n,
        threshold=threshold,
        controller_addresses=wallets,
        controller_passwords=[] if wallets else _passwords(controller_password_file, "controller", n, as_json),
        next_addresses=nxt_addrs,
        next_commitment=commitment,
        next_passwords=(
            _passwords(next_password_file, "next", n, as_json) if not nxt_addrs and commitment is None else []
        ),
        purposes=tuple(operator_purpose) if operator_purpose else None,
        max_validity=parse_duration(operator_max_validity) if operator_max_validity else None,
        max_keys=operator_max_keys,
        governor=_address(governor, "--governor") if governor else None,
        metadata=metadata,
        alg=alg,
        key_id=key_id,
    )
    summary = init_data_dir(
        data_dir,
        password,
        chain_id=chain_id,
        registry=registry,
        api_port=api_port,
        admin_port=admin_port,
        show_progress=not as_json,
        custody=custody,
    )
    if as_json:
        print_json(summary)
        return
    _print_off_node(summary)


def _print_off_node(summary: dict[str, Any]) -> None:
    op = summary["operator"]
    err_console.print(f"[green]initialised[/] {summary['dataDir']} (operator custody)")
    err_console.print(f"  subject       {summary['subject']}")
    err_console.print(f"  network       chainId {summary['chainId']}, registry {summary['registry']}")
    err_console.print("  [bold]on this node[/] (keystore, your node password):")
    err_console.print(
        f"    operator key  {op['operators'][0]}: publishes {', '.join(op['purposes'])} keys valid at most "
        f"{op['maxValidity']} s, {op['maxKeys']} live at once; nothing else"
    )
    err_console.print(f"    first key     {summary['firstKey']}")
    err_console.print(
        f"  [bold]NOT on this node[/]: controllers, {summary['threshold']} of {len(summary['controllers'])}"
    )
    for f in summary["files"]:
        holder = "its own person" if f["role"] == "controller" else "cold storage"
        err_console.print(f"    {f['role']:<10} {f['address']}  {f['path']}  -> {holder}")
    if not any(f["role"] == "controller" for f in summary["files"]):
        for a in summary["controllers"]:
            err_console.print(f"    controller {a}  (your wallet)")
    err_console.print(f"    next (hashed) {summary['nextCommitment']}")
    if summary["custodyDir"]:
        err_console.print(
            f"[bold yellow]move {summary['custodyDir']} off this machine now[/]: give each controller-N.json to "
            "its holder, put the next-N.json files in cold storage, then delete the directory here "
            "(a stolen node must not hold them)"
        )
    inc = summary["inception"]
    if inc["signed"]:
        err_console.print(f"  inception     signed by the controllers: {inc['path']}")
        err_console.print("next: [bold]keyreg node run[/] then [bold]keyreg subject create[/] (submits it)")
    else:
        err_console.print(f"  inception     [bold]awaiting the controllers' signatures[/]: {inc['path']}")
        err_console.print(
            f"next: each controller signs it (`keyreg event typed-data` for a wallet, then `keyreg event attach "
            f"{inc['path']} --signature 0x...`, or `keyreg event sign {inc['path']} --key-file`); then "
            "[bold]keyreg node run[/] and [bold]keyreg subject create[/]"
        )
    err_console.print(f"  admin token   {summary['adminToken']} (0600; give it to your service)")


def _differs(event: Any, asked: dict[str, Any]) -> list[str]:
    """The ``subject create`` options that ask for something the signed inception does not say."""
    from ..keys.service_keys import check_alg

    first = event.keys[0] if event.keys else None
    out = []
    gov = asked.get("--governor")
    if gov and gov.lower() != "0x" + event.governor.hex():
        out.append("--governor")
    if asked.get("--key-id") and (first is None or asked["--key-id"] != first.key_id):
        out.append("--key-id")
    if asked.get("--metadata") and asked["--metadata"] != event.metadata:
        out.append("--metadata")
    if asked.get("--purpose") and (first is None or tuple(asked["--purpose"]) != tuple(first.purposes)):
        out.append("--purpose")
    if asked.get("--alg") and (first is None or check_alg(asked["--alg"]) != first.alg):
        out.append("--alg")
    return out


def submit_pending_inception(
    session: Any, data_dir: Path, out: Path | None, as_json: bool, asked: dict[str, Any] | None = None
) -> None:
    """``keyreg subject create`` on an operator-custody node: submit the inception ``init`` left
    (signed by the controllers, or a proposal they completed) instead of signing one. Options asking
    for another governor, first key or metadata are refused: the controllers signed what init wrote."""
    from ..core.codec import event_to_obj
    from ..core.eip712 import event_digest

    signed = pending_inception(data_dir)
    differ = _differs(signed.event, asked or {})
    if differ:
        raise ConfigError(
            f"{', '.join(differ)}: this node's inception was signed by the controllers at `keyreg init`, and says "
            "otherwise; give these options to `keyreg init` (--governor, --key-id, --metadata, --operator-purpose, "
            "--alg), or use `keyreg init --all-on-node` for a node that signs its own inception"
        )
    subject = event_digest(session.config.domain, signed.event)
    if subject != session.keystore.subject:
        raise ConfigError(f"the pending inception is of subject 0x{subject.hex()}, not this keystore's")
    obj = event_to_obj(signed)
    if out is not None:
        out.write_text(json.dumps(obj, indent=2) + "\n")
    else:
        session.client.post_events([obj])
    summary = {
        "subject": "0x" + subject.hex(),
        "did": f"did:keyreg:{session.config.network.chain_id}:0x{subject.hex()}",
        "keyId": signed.event.keys[0].key_id if signed.event.keys else None,
        "submitted": out is None,
        "out": str(out) if out else None,
    }
    if as_json:
        print_json(summary)
        return
    from .common import out_console

    where = "written to " + str(out) if out else "submitted to " + session.client.url
    err_console.print(
        f"[green]subject created[/] 0x{subject.hex()} (inception signed by the controllers at init; {where})"
    )
    out_console.print("0x" + subject.hex())
