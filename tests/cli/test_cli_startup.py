"""The CLI starts without the node's heavy dependencies: `keyreg --help`, the offline commands and
`keys check` import no web3, eth-account, libp2p or SQLAlchemy (node/cli/common.py states the rule).

Checked on ``sys.modules`` in a fresh interpreter, which is deterministic where a timing is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keyreg.core import builder
from keyreg.core.codec import dumps_canonical
from keyreg.core.eip712 import event_digest
from keyreg.core.records import Domain
from keyreg.keys.service_keys import ServiceKey
from keyreg.verify.bundle import bundle_to_obj
from keyreg.verify.testing import SimulatedRegistry

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
LOG = json.loads((VECTORS / "valid_logs.json").read_text())["logs"][0]

# Run `keyreg ARGS...` as the console script does, then write the loaded modules to $MODULES_OUT.
LAUNCH = """
import json, os, sys
from keyreg.cli import main
sys.argv = ["keyreg", *sys.argv[1:]]
try:
    main()
finally:
    with open(os.environ["MODULES_OUT"], "w") as f:
        json.dump(sorted(sys.modules), f)
"""

# What no command listed here may load: the chain, p2p and storage stacks, and the node's services.
HEAVY = ("web3", "eth_account", "eth_keyfile", "libp2p", "sqlalchemy", "py_ecc", "trio", "keyreg.chain", "keyreg.p2p")
# Nor, for --help and the offline commands, the HTTP client and the node's services.
NODE_SIDE = ("httpx", "keyreg.store", "keyreg.gov", "keyreg.api", "keyreg.app", "keyreg.keys")


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = tmp_path / "modules.json"
    env = {**os.environ, "MODULES_OUT": str(out), "COLUMNS": "120"}
    result = subprocess.run(
        [sys.executable, "-c", LAUNCH, *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    return result, set(json.loads(out.read_text()))


def _loaded(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize(
    "args",
    [("--help",), ("keys", "check", "--help"), ("verify", "--help"), ("gov", "--help"), ("devnet", "up", "--help")],
    ids=lambda a: " ".join(a),
)
def test_help_loads_nothing_heavy(tmp_path: Path, args: tuple[str, ...]) -> None:
    result, modules = _run(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert "Usage: keyreg" in result.stdout
    assert _loaded(modules, HEAVY + NODE_SIDE) == []
    assert {"keyreg.cli.gov", "keyreg.cli.store", "keyreg.cli.devnet"} <= modules  # every topic registered


def test_root_help_lists_every_topic(tmp_path: Path) -> None:
    result, _ = _run(tmp_path, "--help")
    for name in ("anchor", "init", "demo", "verify", "verify-signature", "export", "chain", "devnet", "event"):
        assert f" {name} " in result.stdout, name
    for name in ("gov", "keys", "node", "db", "audit", "subject"):
        assert f" {name} " in result.stdout, name


def test_event_digest_offline_loads_nothing_heavy(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_bytes(dumps_canonical(LOG["events"][1]))
    result, modules = _run(tmp_path, "event", "digest", str(path), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["digest"] == LOG["digests"][1]
    assert out["signers"] == LOG["signers"][1]
    assert _loaded(modules, HEAVY + NODE_SIDE) == []


def test_keys_check_loads_no_chain_or_storage_stack(tmp_path: Path) -> None:
    # No node listens on port 9: the command gets as far as its request and fails with a clear error.
    subject = "0x" + "ab" * 32
    result, modules = _run(
        tmp_path, "keys", "check", "k1", "--subject", subject, "--node", "http://127.0.0.1:9", "-d", str(tmp_path)
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot reach the node at http://127.0.0.1:9" in result.stderr
    assert _loaded(modules, (*HEAVY, "httpx", "keyreg.store", "keyreg.gov", "keyreg.api")) == []


def test_verify_offline_loads_nothing_heavy(tmp_path: Path) -> None:
    domain = Domain(31337, bytes(range(20)))
    t0 = 1_700_000_000
    secrets = [bytes([i]) * 32 for i in (1, 2)]
    key = ServiceKey.generate("Ed25519", "k1")
    inception = builder.inception(
        t0,
        builder.controller_set(secrets[:1]),
        1,
        builder.controller_set(secrets[1:]),
        1,
        [key.published(("sig",), t0)],
    )
    subject = event_digest(domain, inception)
    sim = SimulatedRegistry(domain, number=900, timestamp=t0 + 900)
    sim.add_subject([builder.sign_event(domain, inception, secrets[:1])])
    sim.anchor_direct(subject, 0, subject)
    bundle, block_hash = sim.export()
    path = tmp_path / "keys.bundle"
    path.write_text(json.dumps(bundle_to_obj(bundle)))
    args = ["verify", "0x" + subject.hex(), "k1", "--bundle", str(path), "--checkpoint", "0x" + block_hash.hex()]
    result, modules = _run(tmp_path, *args, "--at", str(t0 + 10), "--purpose", "sig", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "valid"
    assert _loaded(modules, HEAVY + NODE_SIDE) == []
