"""Helpers of the recovery rehearsal (tests/e2e/test_recovery_rehearsal.py, docs/recovery.md).

Everything here drives the real thing: the `keyreg` CLI (the Typer app in-process, as the shell
would run it), `keyreg node run` processes started by `keyreg devnet` code, anvil with the v2
KeyRegistry, Foundry's `cast`. Nothing is mocked; every wait polls a condition with a deadline.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner, Result

from keyreg.chain.client import ChainClient, TransactionReverted
from keyreg.cli import TOPICS, app
from keyreg.keys.testing import wait_for

for _topic in TOPICS:  # every command on the root app, as `keyreg` (keyreg.cli.main) registers them
    importlib.import_module(f"keyreg.cli.{_topic}")

ROOT = Path(__file__).resolve().parents[2]
CAST = ROOT / "contracts/node_modules/@foundry-rs/cast-linux-amd64/bin/cast"
TIMEOUT = 60.0


def keyreg(env: dict[str, str], *args: str, ok: bool = True) -> Result:
    """One `keyreg ...` command line; with ``ok`` it must exit 0 (its output is shown otherwise)."""
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, f"keyreg {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


def refusal(result: Result) -> dict[str, Any]:
    """The JSON error a refused `keyreg ... --json` printed last on stderr (exit code 2)."""
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    error: dict[str, Any] = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    return error


def as_json(result: Result) -> dict[str, Any]:
    return dict(json.loads(result.stdout))


def cast_sign(typed: Path, key_file: Path, password_file: Path) -> str:
    """`cast wallet sign --keystore KEYFILE --data --from-file TYPED` (the path a Ledger or Trezor
    takes through cast with --ledger/--trezor): an EIP-712 signature, 0x + 65 bytes."""
    out = subprocess.run(
        [str(CAST), "wallet", "sign", "--keystore", str(key_file), "--password-file", str(password_file),
         "--data", "--from-file", str(typed)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.strip()


# ------------------------------------------------------------------------------------------- node


def view(api: str, sid: str) -> dict[str, Any] | None:
    r = httpx.get(f"{api}/v1/subjects/{sid}", timeout=5)
    return dict(r.json()) if r.status_code == 200 else None


def head_of(api: str, sid: str) -> tuple[int, str] | None:
    v = view(api, sid)
    return (int(v["seq"]), str(v["head"])) if v else None


def wait_head(apis: list[str], sid: str, seq: int, digest: str, what: str) -> None:
    wait_for(lambda: all(head_of(a, sid) == (seq, digest) for a in apis), TIMEOUT, what)


def verdict(api: str, sid: str, key_id: str, at: int | None = None) -> dict[str, Any]:
    params = {"at": str(at)} if at is not None else {}
    return dict(httpx.get(f"{api}/v1/subjects/{sid}/keys/{key_id}", params=params, timeout=5).json())


def post_event(api: str, event: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/events with one wire event; the node's result for it (status, code, digest)."""
    r = httpx.post(f"{api}/v1/events", json={"events": [event]}, timeout=10)
    assert r.status_code < 500, r.text
    return dict(r.json()["results"][0])


def anchored_directly(api: str, sid: str, seq: int, digest: str) -> bool:
    """The node holds ``digest`` at ``seq`` as its head and sees it as the registry's direct head."""
    v = view(api, sid)
    if v is None or (v["seq"], v["head"]) != (seq, digest):
        return False
    a = v.get("anchor") or {}
    return a.get("status") == "equal" and (a.get("direct") or {}).get("seq") == seq


# ------------------------------------------------------------------------------------------ chain


def chain_head(rpc: str, registry: str, sid: str) -> tuple[int, str]:
    """The registry's direct head (seq, digest) for the subject, read from the contract."""
    client = ChainClient(rpc, registry, timeout_s=5)

    async def main() -> tuple[int, bytes]:
        return await client.head_of(bytes.fromhex(sid[2:]))

    seq, digest = trio.run(main)
    return seq, "0x" + digest.hex()


def contract_refuses(rpc: str, registry: str, relayer_key: bytes, name: str, args: list[Any]) -> str:
    """Send ``name(args)`` to the registry as a relayer; it must revert: the contract's error name."""
    client = ChainClient(rpc, registry, relayer_key=relayer_key, timeout_s=5)

    async def main() -> str:
        try:
            await client.send(name, args)
        except TransactionReverted as exc:
            return str(exc.details.get("error"))
        raise AssertionError(f"{name} was not refused by the registry")

    return trio.run(main)


# ---------------------------------------------------------------------------------------- tokens


def sign_jwt(secret: bytes, kid: str, claims: dict[str, Any]) -> str:
    """A compact EdDSA JWT made with an Ed25519 private key (what a service holding it would do)."""
    return jwt.encode(claims, Ed25519PrivateKey.from_private_bytes(secret), algorithm="EdDSA", headers={"kid": kid})


def jwks_verdict(api: str, sid: str, token: str) -> str | None:
    """A relying party checking ``token`` against the node's JWK Set (fetched now) and the node's
    verdict on the token's key at its ``iat``: None if accepted, else why it is refused."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    jwks = jwt.PyJWKSet.from_dict(httpx.get(f"{api}/v1/subjects/{sid}/jwks.json", timeout=5).json())
    key = next((k for k in jwks.keys if k.key_id == header["kid"]), None)
    if key is None:
        return f"unknown kid {header['kid']}"
    try:
        jwt.decode(token, key.key, algorithms=["EdDSA"])
    except jwt.InvalidTokenError as exc:
        return f"{type(exc).__name__}: {exc}"
    status = verdict(api, sid, header["kid"], int(claims["iat"]))["status"]
    return None if status == "valid" else f"key {status} at iat"


def now() -> int:
    return int(time.time())


def anchor_directly(
    env: dict[str, str], data_dir: str, rpc: str, registry: str, sid: str, seq: int, digest: str
) -> str:
    """`keyreg anchor SID --direct -d DATA_DIR` until the registry's head is (seq, digest).

    Returns "anchored", or "raced" when the command was refused because its transaction reverted
    while another relayer anchored the very same head first (the subject's own node anchors every
    authority-reducing event of its subject directly, ADR 0012): the registry then holds the head
    this command was asked to anchor, which is checked here, so the outcome is the same.
    """
    result = keyreg(env, "anchor", sid, "--direct", "-d", data_dir, "--timeout", str(TIMEOUT), "--json", ok=False)
    if result.exit_code == 0:
        wait_for(lambda: chain_head(rpc, registry, sid) == (seq, digest), TIMEOUT, f"seq {seq} on the registry")
        return "anchored"
    error = refusal(result)
    assert error["code"] == "chain", error
    assert "reverted on-chain" in error["message"], error
    assert chain_head(rpc, registry, sid) == (seq, digest), (error, chain_head(rpc, registry, sid))
    return "raced"


def contract_accepts(rpc: str, registry: str, relayer_key: bytes, name: str, args: list[Any]) -> None:
    """Send ``name(args)`` to the registry as a relayer and wait until it is mined (it must not revert)."""
    client = ChainClient(rpc, registry, relayer_key=relayer_key, timeout_s=5)

    async def main() -> None:
        tx = await client.send(name, args)
        await client.wait_receipt(tx, 0.1, TIMEOUT)

    trio.run(main)


def event_at(api: str, sid: str, seq: int) -> dict[str, Any]:
    """The wire event a node holds at ``seq`` of the subject's log (GET /v1/subjects/{id}/events)."""
    r = httpx.get(f"{api}/v1/subjects/{sid}/events", params={"from": str(seq), "limit": "1"}, timeout=5)
    r.raise_for_status()
    event: dict[str, Any] = r.json()["events"][0]
    return event
