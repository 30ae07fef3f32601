"""``keyreg event typed-data | digest | validate`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import keyreg.cli.event  # noqa: F401  registers the "event" sub-app on the root app
from keyreg.cli import app
from keyreg.core.codec import decode_event, dumps_canonical
from keyreg.core.eip712 import event_digest

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
runner = CliRunner()
LOG = json.loads((VECTORS / "valid_logs.json").read_text())["logs"][0]
TYPED = json.loads((VECTORS / "typed_data.json").read_text())["events"]


def _write(tmp_path: Path, name: str, obj: Any) -> str:
    path = tmp_path / name
    path.write_bytes(obj if isinstance(obj, bytes) else dumps_canonical(obj))
    return str(path)


@pytest.mark.parametrize("vector", TYPED, ids=[v["kind"] for v in TYPED])
def test_typed_data_prints_the_wallet_payload(tmp_path: Path, vector: dict[str, Any]) -> None:
    result = runner.invoke(app, ["event", "typed-data", _write(tmp_path, "e.json", vector["wire"])])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == vector["typedData"]


def test_digest_prints_digest_subject_and_signers(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.json", LOG["events"][1])
    result = runner.invoke(app, ["event", "digest", path, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["digest"] == LOG["digests"][1]
    assert out["subject"] == LOG["subject"]
    assert out["signers"] == LOG["signers"][1]
    text = runner.invoke(app, ["event", "digest", path])
    assert text.exit_code == 0
    assert LOG["digests"][1] in text.stdout


def test_digest_of_an_inception_names_itself_as_subject(tmp_path: Path) -> None:
    path = _write(tmp_path, "i.json", LOG["events"][0])
    out = json.loads(runner.invoke(app, ["event", "digest", path, "--json"]).stdout)
    assert out["digest"] == out["subject"] == LOG["subject"]


def test_validate_replays_a_log_from_one_file_or_many(tmp_path: Path) -> None:
    whole = _write(tmp_path, "log.json", LOG["events"])
    result = runner.invoke(app, ["event", "validate", whole, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [v["digest"] for v in out["events"]] == LOG["digests"]
    assert out["head"] == LOG["final"]["head"]
    assert out["rejected"] == 0
    parts = [_write(tmp_path, f"{i}.json", e) for i, e in enumerate(LOG["events"])]
    result = runner.invoke(app, ["event", "validate", *parts])
    assert result.exit_code == 0, result.output
    assert f"{len(parts)} accepted, 0 rejected" in result.stdout


def test_validate_reports_rejected_events_and_exits_1(tmp_path: Path) -> None:
    events = [LOG["events"][0], LOG["events"][2], LOG["events"][1]]  # seq 2 before seq 1
    result = runner.invoke(app, ["event", "validate", _write(tmp_path, "log.json", events), "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert [v["status"] for v in out["events"]] == ["accepted", "rejected", "accepted"]
    assert out["events"][1]["code"] == "chain_broken"


def test_validate_under_another_registry_rejects_everything(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.json", LOG["events"][:2])
    result = runner.invoke(app, ["event", "validate", path, "--chain-id", "1"])
    assert result.exit_code == 1
    assert "[wrong_network]" in result.stdout


def test_malformed_input_prints_code_and_exits_2(tmp_path: Path) -> None:
    bad = dict(LOG["events"][1], extra=1)
    result = runner.invoke(app, ["event", "digest", _write(tmp_path, "bad.json", bad)])
    assert result.exit_code == 2
    assert "malformed" in result.output
    dup = dumps_canonical(LOG["events"][1])[:-1] + b',"seq":9}'
    result = runner.invoke(app, ["event", "typed-data", _write(tmp_path, "dup.json", dup)])
    assert result.exit_code == 2
    assert "duplicate field" in result.output


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["event", "typed-data", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "[config]" in result.output


def test_stdin(tmp_path: Path) -> None:
    data = dumps_canonical(LOG["events"][0])
    result = runner.invoke(app, ["event", "digest", "-", "--json"], input=data)
    assert result.exit_code == 0, result.output
    signed = decode_event(data)
    assert json.loads(result.stdout)["digest"] == "0x" + event_digest(signed.domain, signed.event).hex()
