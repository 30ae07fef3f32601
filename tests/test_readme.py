"""README.md stays true: its set-up section, the CI entry point, and every `keyreg` command it shows.

- The "Set up" section holds exactly two fenced commands: the main job and the test command.
- The test command appears verbatim in .ci/run (CI runs exactly what the README tells people to).
- Every `keyreg <command>` the README mentions in code (fenced blocks and inline code) resolves in
  the real CLI: `keyreg <command> --help` exits 0 through typer's CliRunner.
- Every relative link to a file or directory points at something that exists.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from keyreg.cli import _register, app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAIN_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && npm ci --prefix contracts --silent"
    " && .venv/bin/keyreg devnet demo"
)
TEST_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && npm ci --prefix contracts --silent"
    " && .venv/bin/python -m pytest -q"
)

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
# `keyreg` as a command (start of code, after whitespace, a shell operator, `$(`, or a venv's bin/)
MENTION = re.compile(r"(?:^|(?<=[\s;&|($])|(?<=bin/))keyreg((?: +[a-z][a-z0-9-]*)+)")


def readme() -> str:
    return README.read_text(encoding="utf-8")


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def code_snippets(text: str) -> list[str]:
    """Every line of code in README: fenced blocks' lines (comments cut) and inline code spans."""
    snippets = []
    for block in FENCE.findall(text):
        snippets += [line.split(" #", 1)[0] for line in block.splitlines() if not line.lstrip().startswith("#")]
    prose = FENCE.sub("", text)
    snippets += INLINE.findall(prose)
    return snippets


@cache
def cli() -> Any:
    """The click command tree typer builds for `keyreg` (groups have a ``commands`` dict)."""
    _register()
    return typer.main.get_command(app)


def resolve(words: list[str]) -> list[str]:
    """The longest command path in ``words`` (e.g. ['gov', 'vote'] from 'gov vote <proposal>')."""
    group = cli()
    path: list[str] = []
    for word in words:
        commands = getattr(group, "commands", None)
        if commands is None:  # a leaf command: the rest are its arguments
            break
        sub = commands.get(word)
        if sub is None:
            assert path, f"`keyreg {word}` is not a keyreg command"
            raise AssertionError(f"`keyreg {' '.join([*path, word])}`: {word!r} is not a command of `{path[-1]}`")
        path.append(word)
        group = sub
    return path


def mentioned_commands() -> set[tuple[str, ...]]:
    found = set()
    for snippet in code_snippets(readme()):
        for match in MENTION.finditer(snippet):
            words = match.group(1).split()
            found.add(tuple(resolve(words)))
    return found


def test_setup_section_has_exactly_the_two_commands() -> None:
    setup = section(readme(), "Set up")
    blocks = FENCE.findall(setup)
    assert len(blocks) == 2, f"the set-up section must hold exactly two fenced commands, found {len(blocks)}"
    commands = [[line for line in block.splitlines() if line.strip()] for block in blocks]
    assert all(len(c) == 1 for c in commands), f"each set-up block must be one command line: {commands}"
    assert [c[0] for c in commands] == [MAIN_COMMAND, TEST_COMMAND]


def test_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert TEST_COMMAND in ci.splitlines(), ".ci/run must run README's test command verbatim, on a line of its own"


def test_readme_mentions_the_main_commands() -> None:
    commands = mentioned_commands()
    for expected in [
        ("devnet", "demo"), ("devnet", "up"), ("devnet", "status"), ("devnet", "down"),
        ("chain", "deploy"), ("chain", "status"), ("anchor",), ("subject", "create"), ("keys", "rotate"),
        ("gov", "deploy"), ("gov", "propose-revocation"), ("gov", "vote"), ("gov", "execute"),
        ("export",), ("verify",),
    ]:  # fmt: skip
        assert expected in commands, f"README.md no longer shows `keyreg {' '.join(expected)}`"


@pytest.mark.parametrize("command", sorted(mentioned_commands()), ids=" ".join)
def test_every_mentioned_command_resolves(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, f"`keyreg {' '.join(command)} --help` exited {result.exit_code}:\n{result.output}"
    assert "Usage" in result.output


def test_relative_links_exist() -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme())
    local = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert local, "README.md links no docs"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
