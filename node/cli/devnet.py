"""``keyreg devnet up|down|status|demo``: a local network in one command.

``up`` starts anvil (the native binary from contracts/node_modules, by PID, with ``--state`` so a
killed anvil restarts where it was), deploys the registry, initialises N data dirs, gives each
node its own funded anvil account as relayer (a V3 keyfile), starts N ``keyreg node run``
processes on loopback that bootstrap from node 1, and writes ``<dir>/devnet.json`` with the
addresses, URLs and PIDs. ``down`` stops them by PID; ``status`` shows what runs; ``demo`` runs
the scenario end to end (anchoring, then a DAO's revocation; creating a throwaway devnet unless
one is up) and prints summary tables. Every secret here is a throwaway devnet secret (anvil's public test accounts).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..core.errors import ConfigError, KeyregError, NetworkError
from . import app as root
from .common import JsonOpt, err_console, handles_errors, print_json

devnet_app = typer.Typer(help="A local network: anvil + the registry contract + N nodes.", no_args_is_help=True)
root.add_typer(devnet_app, name="devnet")

DEFAULT_DIR = Path(".devnet")
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"  # anvil's public default
DevnetDirOpt = Annotated[Path, typer.Option("--dir", envvar="KEYREG_DEVNET_DIR", help="Devnet directory.")]


# Popen objects of the processes this process started: kept so they are reaped (not garbage
# collected while running) when `down` stops them from the same process (tests, `devnet demo`).
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def _step(text: str) -> None:
    from .devnet_demo import report_console

    report_console(stderr=True).print(f"[green]✓[/] {text}", highlight=False)


def anvil_account_key(index: int) -> bytes:
    """Private key of anvil's default account ``index`` (public test keys, devnet only)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    acct = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return bytes(acct.key)


def _alive(pid: int | None, marker: str) -> bool:
    """True if ``pid`` runs and its command line contains ``marker`` (guards against PID reuse)."""
    if not pid:
        return False
    proc = _STARTED.get(pid)
    if proc is not None:  # ours: ask the Popen (right after fork, cmdline is still the parent's)
        return proc.poll() is None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline


def _stop_pid(pid: int, marker: str, timeout: float = 15.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; only if the PID is still the process we started."""
    if not _alive(pid, marker):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid, marker) and time.monotonic() < deadline:
        proc = _STARTED.get(pid)
        if proc is not None:
            proc.poll()  # reaps a child that exited (a zombie keeps its /proc entry)
        time.sleep(0.05)  # polling the process table with a deadline
    if _alive(pid, marker):
        os.kill(pid, signal.SIGKILL)
    proc = _STARTED.pop(pid, None)
    if proc is not None:
        proc.wait(timeout)
    else:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return True


def read_devnet(directory: Path) -> dict[str, Any]:
    """The devnet.json of a devnet directory."""
    path = directory / "devnet.json"
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"no devnet in {directory}: run `keyreg devnet up --dir {directory}`") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is damaged ({exc})") from None


def _write_devnet(directory: Path, info: dict[str, Any]) -> None:
    tmp = directory / ".devnet.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(directory / "devnet.json")


def start_anvil_detached(directory: Path, port: int, block_time: float | None) -> int:
    """Start anvil in its own session (it outlives this command) with a state file; returns its PID."""
    import httpx

    from ..chain.deploy import _rpc, anvil_binary

    binary = anvil_binary()
    if not binary.exists():
        raise ConfigError(f"anvil not found at {binary}: run `npm ci --prefix contracts`")
    args = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--chain-id", "31337", "--silent"]
    args += ["--state", str(directory / "anvil-state.json"), "--state-interval", "1"]
    if block_time:
        args += ["--block-time", str(block_time)]
    with open(directory / "anvil.log", "ab") as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    _STARTED[proc.pid] = proc
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NetworkError(f"anvil exited with status {proc.returncode} (log: {directory / 'anvil.log'})")
        try:
            _rpc(url, "eth_chainId", [], timeout=1)
            return proc.pid
        except (httpx.HTTPError, OSError):
            time.sleep(0.05)  # polling anvil's RPC with a deadline
    proc.kill()
    raise NetworkError(f"anvil did not answer on {url} within 15s")


def _spawn_node(data_dir: Path, password_file: Path, env: dict[str, str]) -> int:
    runfile = data_dir / "node.json"
    with contextlib.suppress(FileNotFoundError):
        runfile.unlink()
    cmd = [sys.executable, "-m", "keyreg.cli.node", "node", "run", "-d", str(data_dir)]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--password-file", str(password_file)]
    with open(data_dir / "node.log", "ab") as log:
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _STARTED[proc.pid] = proc
    return proc.pid


def _wait_node(data_dir: Path, pid: int, timeout: float = 90.0) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, "keyreg.cli.node"):
            tail = (data_dir / "node.log").read_text(errors="replace")[-1500:]
            raise NetworkError(f"node {data_dir.name} exited:\n{tail}")
        try:
            info = dict(json.loads((data_dir / "node.json").read_text()))
            if info.get("pid") == pid and httpx.get(info["api"] + "/v1/health", timeout=2).status_code == 200:
                addr_file = data_dir / "p2p.addr"
                info["p2p"] = addr_file.read_text().split() if addr_file.exists() else []
                return info
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.1)  # polling the child's health with a deadline
    raise NetworkError(f"node {data_dir.name} did not answer /v1/health within {timeout:.0f}s")


def _configure_node(data_dir: Path, rpc_url: str, bootstrap: list[str], chain: dict[str, Any]) -> None:
    """Point a data dir at the devnet chain and peers (rewrites keyreg.toml)."""
    from ..config import load_config

    cfg = load_config(data_dir)
    cfg = replace(
        cfg,
        chain=replace(cfg.chain, rpc_url=rpc_url, relayer_keystore="relayer.json", **chain),
        p2p=replace(cfg.p2p, bootstrap=tuple(bootstrap)),
    )
    (data_dir / "keyreg.toml").write_text(cfg.to_toml())


def devnet_up(
    directory: Path,
    nodes: int = 3,
    port: int = 8545,
    block_time: float | None = 1.0,
    chain: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Start anvil, deploy, init and start ``nodes`` nodes; returns (and writes) devnet.json's content."""
    from eth_keyfile.keyfile import create_keyfile_json

    from ..chain.deploy import ANVIL_DEV_KEY, connect, deploy_registry
    from ..keys.keystore import Password, write_private_text
    from .init import init_data_dir

    say = _step if progress else (lambda _t: None)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "devnet.json").exists():
        old = read_devnet(directory)
        if _alive(old.get("anvil", {}).get("pid"), "anvil") or any(
            _alive(n.get("pid"), "keyreg.cli.node") for n in old.get("nodes", [])
        ):
            raise ConfigError(f"a devnet already runs in {directory}: `keyreg devnet down --dir {directory}` first")
    chain_settings = {
        "confirmations": 1,
        "poll_interval_s": 0.5,
        "anchor_epoch_s": 5.0,
        "retry_max_s": 5.0,
        **(chain or {}),
    }
    password_file = directory / "password"
    if not password_file.exists():
        write_private_text(password_file, secrets.token_urlsafe(18) + "\n")
    password = password_file.read_text().strip()
    env = {"KEYREG_KDF_N": "1024", "KEYREG_RELAYER_PASSWORD_FILE": str(password_file.resolve())}
    os.environ["KEYREG_KDF_N"] = "1024"  # devnet keystores: a cheap KDF so they open instantly

    anvil_pid = start_anvil_detached(directory, port, block_time)
    rpc_url = f"http://127.0.0.1:{port}"
    say(f"anvil on {rpc_url} (pid {anvil_pid}, state {directory / 'anvil-state.json'})")
    info: dict[str, Any] = {
        "dir": str(directory.resolve()),
        "rpc": rpc_url,
        "chainId": 31337,
        "anvil": {"pid": anvil_pid, "port": port, "state": str((directory / "anvil-state.json").resolve())},
        "nodes": [],
    }
    _write_devnet(directory, info)  # PIDs recorded at once, so `down` can always clean up
    w3 = connect(rpc_url)
    registry = (directory / "registry").read_text().strip() if (directory / "registry").exists() else ""
    if not registry or len(w3.eth.get_code(w3.to_checksum_address(registry))) == 0:
        registry = deploy_registry(w3, ANVIL_DEV_KEY).address.lower()
        (directory / "registry").write_text(registry + "\n")
        say(f"deployed KeyRegistry at {registry}")
    else:
        say(f"KeyRegistry already at {registry} (anvil state restored)")
    info["registry"] = registry
    bootstrap: list[str] = []
    for i in range(1, nodes + 1):
        data_dir = directory / f"node{i}"
        if not (data_dir / "keystore" / "keystore.json").exists():
            custody = _devnet_custody(directory / "custody" / f"node{i}")
            init_data_dir(data_dir, Password(password), chain_id=31337, registry=registry, custody=custody)
        relayer = anvil_account_key(i)
        doc = create_keyfile_json(relayer, password.encode(), kdf="pbkdf2", iterations=1024)
        write_private_text(data_dir / "relayer.json", json.dumps(doc))
        _configure_node(data_dir, rpc_url, bootstrap, chain_settings)
        pid = _spawn_node(data_dir, password_file, env)
        node_info: dict[str, Any] = {"name": f"node{i}", "dataDir": str(data_dir.resolve()), "pid": pid}
        info["nodes"].append(node_info)
        _write_devnet(directory, info)
        if i == 1:  # the others bootstrap from node 1, so it must be up first
            node_info.update(_wait_node(data_dir, pid))
            bootstrap = node_info["p2p"][:1]
            say(f"node1 api {node_info['api']} (pid {pid})")
    for node_info in info["nodes"][1:]:
        node_info.update(_wait_node(Path(node_info["dataDir"]), node_info["pid"]))
        say(f"{node_info['name']} api {node_info['api']} (pid {node_info['pid']}, bootstrap node1)")
    for n in info["nodes"]:
        n.pop("services", None)
        n["relayer"] = "0x" + _address(anvil_account_key(int(n["name"][4:]))).hex()
    _write_devnet(directory, info)
    return info


def _devnet_custody(custody_dir: Path) -> Any:
    """The default custody on a devnet node: the node holds its operator key only; one controller
    and its next generation are keyfiles in ``custody_dir`` (outside the node's data dir), each
    under its own random password. DEVNET ONLY: the passwords are kept beside the keyfiles
    (``devnet-only-passwords.json``, 0600) so a ceremony can be tried on the devnet; a real
    deployment gives each keyfile to its holder and keeps no password on the machine."""
    from ..keys.keystore import Password, write_private_text
    from .init import OffNodeCustody

    pws = {"controller-1": secrets.token_urlsafe(18), "next-1": secrets.token_urlsafe(18)}
    custody_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private_text(custody_dir.parent / f"{custody_dir.name}-devnet-only-passwords.json", json.dumps(pws))
    return OffNodeCustody(
        custody_dir=custody_dir,
        controller_passwords=[Password(pws["controller-1"])],
        next_passwords=[Password(pws["next-1"])],
    )


def _address(key: bytes) -> bytes:
    from ..core.hashing import address_of_private_key

    return address_of_private_key(key)


def restart_anvil(directory: Path, block_time: float | None = 1.0) -> int:
    """Start the devnet's anvil again on its port from its state file (after a crash); returns the new PID."""
    info = read_devnet(directory)
    if _alive(info["anvil"].get("pid"), "anvil"):
        raise ConfigError(f"anvil still runs (pid {info['anvil']['pid']})")
    pid = start_anvil_detached(directory, int(info["anvil"]["port"]), block_time)
    info["anvil"]["pid"] = pid
    _write_devnet(directory, info)
    return pid


def devnet_down(directory: Path) -> list[str]:
    """Stop the nodes and anvil of a devnet by PID; returns what was stopped."""
    info = read_devnet(directory)
    stopped = []
    for n in info.get("nodes", []):
        if _stop_pid(int(n.get("pid") or 0), "keyreg.cli.node"):
            stopped.append(n["name"])
    if _stop_pid(int(info.get("anvil", {}).get("pid") or 0), "anvil", timeout=5):
        stopped.append("anvil")
    return stopped


def devnet_status(directory: Path) -> dict[str, Any]:
    """What runs: anvil's block, and each node's health (subjects, peers, chain queue)."""
    import httpx

    from ..chain.deploy import _rpc

    info = read_devnet(directory)
    out: dict[str, Any] = {"dir": info["dir"], "rpc": info["rpc"], "registry": info.get("registry"), "nodes": []}
    anvil_pid = info.get("anvil", {}).get("pid")
    out["anvil"] = {"pid": anvil_pid, "running": _alive(anvil_pid, "anvil"), "block": None}
    with contextlib.suppress(httpx.HTTPError, OSError, RuntimeError, ValueError):
        out["anvil"]["block"] = int(_rpc(info["rpc"], "eth_blockNumber", [], timeout=2), 16)
    for n in info.get("nodes", []):
        row: dict[str, Any] = {"name": n["name"], "pid": n["pid"], "api": n.get("api"), "running": False}
        if _alive(n["pid"], "keyreg.cli.node") and n.get("api"):
            try:
                health = httpx.get(n["api"] + "/v1/health", timeout=3).json()
                chain = health.get("services", {}).get("chain", {})
                p2p = health.get("services", {}).get("p2p", {})
                row.update(
                    running=True,
                    subjects=health.get("subjects"),
                    peers=p2p.get("peers"),
                    rpc=chain.get("rpc"),
                    block=chain.get("last_block"),
                    queue=chain.get("queue_depth"),
                )
            except (httpx.HTTPError, ValueError):
                row["running"] = "no answer"
        out["nodes"].append(row)
    return out


@devnet_app.command("up")
@handles_errors
def up(
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Number of node processes.", min=1, max=16)] = 3,
    directory: DevnetDirOpt = DEFAULT_DIR,
    port: Annotated[int, typer.Option(help="anvil's RPC port on 127.0.0.1.")] = 8545,
    block_time: Annotated[float, typer.Option(help="anvil block time in seconds (0 = mine on every tx).")] = 1.0,
    epoch: Annotated[float, typer.Option(help="Batch anchoring epoch in seconds.")] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Start anvil, deploy the registry, start N nodes that find each other; writes <dir>/devnet.json."""
    try:
        info = devnet_up(directory, nodes, port, block_time or None, {"anchor_epoch_s": epoch}, progress=not as_json)
    except KeyregError:
        with contextlib.suppress(KeyregError):
            devnet_down(directory)
        raise
    if as_json:
        print_json(info)
        return
    _print_status(devnet_status(directory))
    err_console.print(f"devnet up: {directory / 'devnet.json'}; stop it with `keyreg devnet down --dir {directory}`")


@devnet_app.command("down")
@handles_errors
def down(
    directory: DevnetDirOpt = DEFAULT_DIR,
    clean: Annotated[bool, typer.Option(help="Also delete the devnet directory (chain state, node data).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop the devnet's nodes and anvil (by PID)."""
    stopped = devnet_down(directory)
    if clean:
        shutil.rmtree(directory, ignore_errors=True)
    if as_json:
        print_json({"stopped": stopped, "cleaned": clean})
        return
    err_console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@devnet_app.command("status")
@handles_errors
def status(directory: DevnetDirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Show anvil and every node: running, API URL, subjects, peers, RPC state, anchor queue."""
    out = devnet_status(directory)
    if as_json:
        print_json(out)
        return
    _print_status(out)


def _print_status(out: dict[str, Any]) -> None:
    from .devnet_demo import report_console

    console = report_console()
    a = out["anvil"]
    console.print(
        f"anvil {'running' if a['running'] else 'DOWN'} (pid {a['pid']}) block {a['block']}, "
        f"registry {out['registry']}, rpc {out['rpc']}"
    )
    table = Table(title="devnet nodes")
    for col in ("node", "pid", "api", "running", "subjects", "peers", "rpc", "block", "anchor queue"):
        table.add_column(col)
    for n in out["nodes"]:
        table.add_row(
            n["name"],
            str(n["pid"]),
            str(n.get("api")),
            str(n["running"]),
            str(n.get("subjects", "-")),
            str(n.get("peers", "-")),
            str(n.get("rpc", "-")),
            str(n.get("block", "-")),
            str(n.get("queue", "-")),
        )
    console.print(table)


def stop_started() -> list[int]:
    """Stop every process this process started and has not stopped yet (by PID); returns the PIDs."""
    stopped = []
    for pid in list(_STARTED):
        proc = _STARTED[pid]
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            stopped.append(pid)
        _STARTED.pop(pid, None)
    return stopped


def _log_tails(where: Path, lines: int = 12) -> str:
    """The last lines of each node's log and anvil's, for a failure report."""
    parts = []
    for log in [*sorted(where.glob("node*/node.log")), where / "anvil.log"]:
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(parts)


class _Terminated(Exception):
    """SIGTERM/SIGHUP during the demo: unwinds like Ctrl-C so the devnet is torn down."""


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise _Terminated(signal.Signals(signum).name)


_DEMO_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _set_handlers(handlers: dict[signal.Signals, Any]) -> dict[signal.Signals, Any]:
    """Install signal handlers (main thread only; elsewhere a no-op); returns the previous ones."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}


@devnet_app.command("demo")
@handles_errors
def demo(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Use the devnet running here (default: a throwaway one).")
    ] = None,
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Nodes of the throwaway devnet.", min=2)] = 3,
    keep: Annotated[bool, typer.Option(help="Leave the throwaway devnet running.")] = False,
    governance: Annotated[
        bool, typer.Option(help="Include the DAO revocation step (deploy a DAO, vote, execute).")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds each step may take before the demo fails.", min=1)] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """The scenario end to end: rotation, gossip, batch + direct anchors, a DAO's revocation; summary.

    Exit 0: every check passed; 1: a check failed; 2: an error (a step timed out, a process did not start).

    The devnet it started is torn down on any exit, Ctrl-C included (kept with --keep, or for its logs on a failure).
    """
    from .devnet_demo import print_summary, run_scenario

    own = directory is None
    where = Path(tempfile.mkdtemp(prefix="keyreg-devnet-")) if directory is None else directory
    previous = _set_handlers({signal.SIGTERM: _raise_terminated, signal.SIGHUP: _raise_terminated})
    keep_logs = False  # on a failure (not on Ctrl-C) the devnet directory stays, for its logs
    try:
        if own:
            from ..chain.deploy import free_port

            devnet_up(where, nodes, free_port(), 1.0, {"anchor_epoch_s": 3.0}, progress=not as_json)
        summary = run_scenario(read_devnet(where), progress=not as_json, timeout=timeout, governance=governance)
        keep_logs = not summary["ok"]
    except _Terminated as exc:
        err_console.print(f"devnet demo: {exc}, stopping")
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        err_console.print("devnet demo: interrupted, stopping")
        raise typer.Exit(130) from None
    except KeyregError:
        keep_logs = True
        if own:
            err_console.print("devnet demo failed; the logs end with:", highlight=False)
            err_console.print(_log_tails(where), markup=False, highlight=False, soft_wrap=True)
        raise
    finally:
        # a second Ctrl-C (or a SIGTERM) must not cut the clean-up short
        during = _set_handlers(dict.fromkeys(_DEMO_SIGNALS, signal.SIG_IGN))
        try:
            if own and not keep:
                with contextlib.suppress(KeyregError):
                    devnet_down(where)
                stop_started()  # anything started before devnet.json recorded it
                if keep_logs:
                    err_console.print(f"devnet demo: logs left in {where}")
                else:
                    shutil.rmtree(where, ignore_errors=True)
            elif own:
                err_console.print(f"devnet kept in {where}: `keyreg devnet down --dir {where} --clean` to stop it")
        finally:
            _set_handlers({**during, **previous})
    if as_json:
        print_json(summary)
    else:
        print_summary(summary)
    if not summary["ok"]:
        raise typer.Exit(1)
