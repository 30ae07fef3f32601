"""The import table of docs/architecture.md holds: import-linter's contracts in pyproject.toml.

The contracts are checked on the tree as it is, and shown to bite on copies of the tree with one
forbidden import added (a service reaching back to the composition root, the core doing I/O).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the ``keyreg`` package found in ``tree`` with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_table_holds() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _copy_with(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of node/ as the package ``keyreg`` (its installed name, found first on PYTHONPATH) with
    ``line`` appended to ``module`` (a path under node/)."""
    shutil.copytree(ROOT / "node", tmp_path / "keyreg", ignore=shutil.ignore_patterns("__pycache__", "*.json"))
    path = tmp_path / "keyreg" / module
    path.write_text(path.read_text() + "\n" + line + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "named"),
    [
        ("chain/service.py", "from ..app import Node", "keyreg.chain.service -> keyreg.app"),
        ("gov/service.py", "from ..api.app import ApiContext", "keyreg.gov.service -> keyreg.api.app"),
        ("p2p/sync.py", "from ..chain import client", "keyreg.p2p.sync -> keyreg.chain.client"),
        ("store/audit.py", "from ..registry import Registry", "keyreg.store.audit -> keyreg.registry"),
        ("core/log.py", "import trio", "keyreg.core.log -> trio"),
        ("registry.py", "from .store.sql import SqlStore", "keyreg.registry -> keyreg.store.sql"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, module: str, line: str, named: str) -> None:
    result = lint_imports(_copy_with(tmp_path, module, line))
    assert result.returncode == 1, result.stdout + result.stderr
    assert named in result.stdout
