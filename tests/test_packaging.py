"""The installed import name is ``keyreg`` (ADR 0029): the repository keeps its code in node/, and a
wheel built from the tree installs the package ``keyreg`` and nothing named ``node``, and runs
``keyreg node run`` outside the checkout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
IMPORT_OF_NODE = re.compile(r"^\s*(?:from|import)\s+node(?:\.|\s|$)", re.M)


def test_every_package_under_node_is_installed_as_keyreg() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"keyreg": "node"}
    tree = {
        ".".join(("keyreg", *init.parent.relative_to(ROOT / "node").parts))
        for init in (ROOT / "node").rglob("__init__.py")
    }
    assert set(config["packages"]) == tree


def test_nothing_imports_the_directory_name() -> None:
    """One name per module: ``node.x`` and ``keyreg.x`` would be two copies of every class."""
    offenders = [
        str(path.relative_to(ROOT))
        for top in ("node", "tests", "bench", "devnet")
        for path in (ROOT / top).rglob("*.py")
        if IMPORT_OF_NODE.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


@pytest.mark.slow
def test_a_wheel_installs_keyreg_and_runs_a_node_outside_the_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    # the build backend pyproject.toml names, from the index pip is configured with (as `pip install` does)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = wheels.glob("keyreg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"keyreg", wheel.name.split("-py")[0] + ".dist-info"}
    assert "keyreg/chain/artifacts/KeyRegistry.json" in names  # package data travels with the code
    assert any(n.startswith("keyreg/explorer/templates/") for n in names)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # the wheel's copy comes first; the dependencies come from this environment; cwd is outside the tree
    env = {**os.environ, "PYTHONPATH": str(site), "KEYREG_PASSWORD": "wheel-test", "KEYREG_KDF_N": "16"}
    env.pop("KEYREG_DATA_DIR", None)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import keyreg, importlib.util; print(keyreg.__file__, importlib.util.find_spec('node'))",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where == [str(site / "keyreg" / "__init__.py"), "None"]
    keyreg = [str(site / "bin" / "keyreg")]
    data = tmp_path / "data"
    subprocess.run(
        [*keyreg, "init", "-d", str(data), "--all-on-node", "--json"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    with open(tmp_path / "node.log", "wb") as log:
        proc = subprocess.Popen(
            [*keyreg, "node", "run", "-d", str(data), "--port", "0", "--admin-port", "0"],
            cwd=tmp_path,
            env={**env, "KEYREG_CHAIN_RPC_URL": "", "KEYREG_P2P_ENABLED": "false"},
            stdout=log,
            stderr=log,
        )
    try:
        runfile, deadline = data / "node.json", time.monotonic() + 60
        while not runfile.exists():
            assert proc.poll() is None, (tmp_path / "node.log").read_text()
            assert time.monotonic() < deadline, "the node did not start in 60 s"
            time.sleep(0.1)
        api = json.loads(runfile.read_text())["api"]
        health = httpx.get(f"{api}/v1/health", timeout=10).json()
        assert health["ok"] is True, health
        page = httpx.get(f"{api}/", timeout=10)  # the explorer's templates and assets came with the wheel
        assert page.status_code == 200
        assert "keyreg" in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, (tmp_path / "node.log").read_text()
