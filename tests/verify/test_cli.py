"""``keyreg verify`` / ``verify-signature``: verdicts, exit codes, --json, and no network at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CHECKPOINT_TIME, Scenario
from typer.testing import CliRunner
from verify_helpers import T0

import keyreg.cli.verify as cli_verify
from keyreg.cli import app
from keyreg.verify.requests import sign_message

# Runs the CLI in a fresh interpreter whose audit hook refuses to create any socket.
NO_NETWORK = """
import sys
def _audit(event, args):
    if event.startswith("socket."):  # socket.__new__, connect, bind, getaddrinfo, sendto, ...
        raise RuntimeError("network access blocked by the test: " + event)
sys.addaudithook(_audit)
from keyreg.cli import main
sys.argv = ["keyreg", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def bundle_file(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "keys.bundle"
    path.write_bytes(scenario.data())
    return path


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def _args(s: Scenario, f: Path, name: str, kid: str, *extra: str) -> list[str]:
    return [
        "verify",
        "0x" + s.sid(name).hex(),
        kid,
        "--bundle",
        str(f),
        "--checkpoint",
        "0x" + s.block_hash.hex(),
        *extra,
    ]


def test_verify_with_network_blocked(scenario: Scenario, bundle_file: Path) -> None:
    args = _args(scenario, bundle_file, "alice", "k1", "--at", str(T0 + 1000), "--purpose", "sig", "--json")
    result = subprocess.run([sys.executable, "-c", NO_NETWORK, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "valid"
    assert out["verdict"]["keyId"] == "k1"
    assert out["view"]["checkpoint"]["timestamp"] == CHECKPOINT_TIME
    assert out["view"]["ageSeconds"] > 0
    # the guard itself works: a socket in the same wrapper is refused
    probe = NO_NETWORK.replace("main()", "import socket; socket.create_connection(('127.0.0.1', 9))")
    blocked = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert blocked.returncode != 0
    assert "network access blocked" in blocked.stderr


@pytest.mark.parametrize(
    ("name", "kid", "at", "extra", "status"),
    [
        ("alice", "k1", T0 + 1000, [], "valid"),
        ("alice", "k4", T0 + 1000, [], "not-yet-valid"),
        ("alice", "k1", T0 + 4000, [], "expired"),
        ("bob", "k1", T0 + 600, [], "revoked"),
        ("carol", "k1", T0 + 800, [], "revoked"),
        ("alice", "k2", T0 + 1000, ["--purpose", "enc"], "wrong-purpose"),
        ("alice", "zz", T0 + 1000, [], "unknown-key"),
        ("dave", "k1", T0 + 1000, [], "disputed"),
        ("erin", "k1", T0 + 1000, [], "stale-view"),
    ],
)
def test_exit_codes(
    scenario: Scenario, bundle_file: Path, name: str, kid: str, at: int, extra: list[str], status: str
) -> None:
    code, out = _run([*_args(scenario, bundle_file, name, kid, "--at", str(at), *extra), "--json"])
    assert code == cli_verify.EXIT_CODES[status], out
    assert json.loads(out)["status"] == status
    code, out = _run(_args(scenario, bundle_file, name, kid, "--at", str(at), *extra))
    assert code == cli_verify.EXIT_CODES[status]
    assert status.replace("-", " ") in out.replace("-", " ")


def test_refused_and_stale_bundles(scenario: Scenario, bundle_file: Path, tmp_path: Path) -> None:
    code, out = _run([*_args(scenario, bundle_file, "alice", "k1"), "--max-staleness", "5m"])
    assert code == cli_verify.EXIT_CODES["bundle-stale"], out
    assert "old" in out
    obj = scenario.copy()
    scenario.subject_obj(obj, "alice")["events"][1]["timestamp"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(obj))
    code, out = _run([*_args(scenario, bad, "alice", "k1"), "--json"])
    assert code == cli_verify.EXIT_CODES["bundle-refused"]
    assert json.loads(out)["error"]["code"] == "bundle_log"
    code, out = _run(
        ["verify", "0x" + scenario.sid("alice").hex(), "k1", "--bundle", str(bundle_file), "--checkpoint", "0x12"]
    )
    assert code == 2


def test_verify_signature(scenario: Scenario, bundle_file: Path, tmp_path: Path) -> None:
    msg = tmp_path / "msg"
    msg.write_bytes(b"release v1.2.3")
    sig = sign_message("secp256k1", scenario.actors["alice"].secrets["k3"], msg.read_bytes())
    base = ["verify-signature", "0x" + scenario.sid("alice").hex(), "k3", "--bundle", str(bundle_file)]
    base += ["--checkpoint", "0x" + scenario.block_hash.hex(), "--at", str(T0 + 1000)]
    code, out = _run([*base, "--message-file", str(msg), "--signature", "0x" + sig.hex(), "--json"])
    assert code == 0, out
    assert json.loads(out)["signatureValid"] is True
    code, out = _run([*base, "--message", "release v1.2.4", "--signature", "0x" + sig.hex()])
    assert code == cli_verify.EXIT_CODES["bad-signature"], out
    code, out = _run(
        [*base, "--message", "x", "--signature", "0x" + sig.hex(), "--at", str(T0 + 10**6), "--purpose", "nope"]
    )
    assert code == cli_verify.EXIT_CODES["wrong-purpose"], out
