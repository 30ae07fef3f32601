"""Fixtures of the explorer's browser tests: Debian's chromium driven by Playwright, a devnet of real
node processes on anvil, and the subjects the tests look at (explorer_fixture.py).

Browser tests skip with a visible reason when /usr/bin/chromium or Playwright is missing, except
under CI=true, where .ci/run installs chromium and a missing browser is a failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from explorer_fixture import HOSTILE, HOSTILE_REASON, TIMEOUT, Net, Subject

from keyreg.chain.deploy import anvil_binary, free_port
from keyreg.cli.devnet import devnet_down, devnet_up
from keyreg.core.records import Domain
from keyreg.gov.scenario import wait_for

CHROMIUM = Path("/usr/bin/chromium")


def _need_browser() -> None:
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "Playwright is not installed (pip install -e '.[dev]')"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"explorer browser tests must run under CI: {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--disable-gpu", "--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    """Anvil and two `keyreg node run` processes (devnet), a rotated subject and a hostile one on both."""
    _need_browser()
    if not anvil_binary().exists():
        pytest.skip(f"anvil binary missing at {anvil_binary()}: run `npm ci --prefix contracts`")
    directory = tmp_path_factory.mktemp("explorer") / "devnet"
    chain = {"confirmations": 1, "poll_interval_s": 0.3, "anchor_epoch_s": 2.0, "retry_max_s": 1.0}
    try:
        info = devnet_up(directory, nodes=2, port=free_port(), block_time=1.0, chain=chain, progress=False)
        apis = [n["api"] for n in info["nodes"]]
        domain = Domain(int(info["chainId"]), bytes.fromhex(info["registry"].removeprefix("0x")))
        now, overlap = int(time.time()), 3 * 3600
        rotated = Subject(domain).incept(now - 7200, "svc-2026-11", metadata="payments API (example)")
        rotated.rotate_key(now - 3600, "svc-2026-11", "svc-2026-12", overlap)
        hostile = Subject(domain).incept(now - 900, "k-first", metadata=HOSTILE)
        hostile.publish(now - 800, "k-second").revoke(now - 700, "k-second", now - 700, HOSTILE_REASON)
        body = b'{"events":[' + b",".join(rotated.events + hostile.events) + b"]}"
        resp = httpx.post(f"{apis[0]}/v1/events", content=body, timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["accepted"] == 5, resp.text
        for api in apis:  # gossip takes them to the other node
            for s in (rotated, hostile):
                wait_for(
                    lambda api=api, s=s: (
                        httpx.get(f"{api}/v1/subjects/{s.hex}", timeout=5).json()["seq"] == len(s.events) - 1
                    ),
                    TIMEOUT,
                    f"{api} to hold {s.hex}",
                )
        yield Net(info, apis, domain, rotated, hostile, overlap)
    finally:
        devnet_down(directory)
