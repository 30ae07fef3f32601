"""The explorer in a real browser (Debian's chromium, Playwright) against a devnet of real nodes.

Every page loads without console errors; search finds a subject by each kind of key; a rotated
subject's timeline shows both keys overlapping; hostile event text shows as text and runs nothing;
a ballot signed in the page by an injected EIP-1193 wallet is relayed and counted on-chain, and
the DAO's revocation then shows on the timeline of every node's explorer; axe-core finds no
serious or critical accessibility violation. Screenshots go to a temporary folder, or to the folder
named by KEYREG_SCREENSHOTS_DIR (``KEYREG_SCREENSHOTS_DIR=docs/explorer`` refreshes the documentation's),
so a test run never rewrites tracked files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from explorer_fixture import HOSTILE, TIMEOUT, Net

from node.cli.devnet import anvil_account_key
from node.core.hashing import address_of_private_key
from node.gov.contracts import Governance, address_of, connect, deploy_dao
from node.gov.scenario import create_governed_subject, mine, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.anvil, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("KEYREG_SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "keyreg-explorer-shots")
AXE = ROOT / "contracts" / "node_modules" / "axe-core" / "axe.min.js"
DEPLOYER = anvil_account_key(9)
MEMBERS = [anvil_account_key(4), bytes.fromhex("33" * 32), anvil_account_key(5)]  # member 1 holds no ETH
VOTING_PERIOD = 12
MS = 1000  # Playwright timeouts are in milliseconds


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh context, failing the test on any console error or uncaught exception."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(TIMEOUT * MS)
    errors: list[str] = []
    p.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    p.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    p.errors = errors
    try:
        yield p
    finally:
        context.close()


def shot(page: Any, name: str, full: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def lanes(page: Any) -> dict[str, dict[str, str]]:
    """The timeline's lanes as the browser sees them: key id -> data attributes."""
    return dict(
        page.eval_on_selector_all(
            "svg.timeline g.lane",
            "gs => gs.map(g => [g.dataset.key, Object.assign({}, g.dataset)])",
        )
    )


def test_every_page_loads_without_console_errors(net: Net, page: Any) -> None:
    api, sid = net.apis[0], net.rotated.hex
    pages = {
        "overview": f"{api}/",
        "subject": f"{api}/subjects/{sid}",
        "key-check": f"{api}/keys?subject={sid}&key=svc-2026-11&purpose=sig",
        "key-check-form": f"{api}/keys",
        "proposals": f"{api}/proposals",
        "anchors": f"{api}/anchors",
    }
    for name, url in pages.items():
        resp = page.goto(url)
        assert resp is not None, name
        assert resp.status == 200, (name, resp.status)
        assert "default-src 'none'" in resp.headers["content-security-policy"]
        page.wait_for_load_state("load")
        assert page.locator("main h1").count() == 1, name
        if name != "key-check-form":
            shot(page, name)
    assert page.errors == []
    # The verdict is explained and reproducible.
    page.goto(pages["key-check"])
    assert page.locator(".explain").inner_text().startswith("valid: published in seq 0, valid from")
    verdict = page.locator("section.verdict dl").inner_text()
    page.get_by_role("link", name="Link to this check").click()  # "now" is pinned in the link
    page.wait_for_url("**&at=**")
    assert page.locator("section.verdict dl").inner_text() == verdict
    assert page.locator("#curl").inner_text().startswith(f"curl '{api}/v1/subjects/{sid}/keys/svc-2026-11")
    assert "keyreg keys check svc-2026-11" in page.locator("#cli").inner_text()
    # A phone, in dark mode: the timeline scrolls inside its box, the page does not overflow.
    phone = page.context.browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        p = phone.new_page()
        p.goto(pages["subject"])
        width = p.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the subject page is {width}px wide on a 390px phone"
        shot(p, "subject-phone-dark")
    finally:
        phone.close()
    assert page.errors == []


def test_search_finds_a_subject_by_each_kind_of_key(net: Net, page: Any) -> None:
    api, s = net.apis[1], net.rotated
    cases = {
        "subject id": (s.hex, f"/subjects/{s.hex}"),
        "event digest (the head)": ("0x" + s.head().hex(), f"/subjects/{s.hex}"),
        "subject/key id": (f"{s.hex}/svc-2026-12", "/keys?"),
        "controller address": ("0x" + s.address.hex(), f"/subjects/{s.hex}"),
    }
    for what, (query, landing) in cases.items():
        page.goto(f"{api}/")
        page.get_by_label("Search").fill(query)
        page.get_by_role("button", name="Search").click()
        page.wait_for_url(f"**{landing}**")
        assert landing in page.url, what
        if what == "subject/key id":
            assert page.locator(".verdict .badge").inner_text() == "valid"
        else:
            assert s.hex in page.locator("h1").inner_text(), what
    assert page.errors == []


def test_timeline_of_a_rotated_subject_shows_both_keys_overlapping(net: Net, page: Any) -> None:
    page.goto(f"{net.apis[1]}/subjects/{net.rotated.hex}")
    got = lanes(page)
    old, new = got["svc-2026-11"], got["svc-2026-12"]
    assert old["endedBy"] == "retired"
    assert new["end"] == ""
    assert int(new["start"]) < int(old["end"])  # published before the old one ends: the overlap
    assert old["status"] == new["status"] == "valid"  # now is inside the overlap window
    band = page.locator("svg.timeline rect.overlap")
    assert band.count() == 1
    assert (band.get_attribute("data-start"), band.get_attribute("data-end")) == (new["start"], old["end"])
    # Drawn to scale: the two bars overlap on screen, and the overlap band spans exactly that stretch.
    bars = [page.locator(f'svg.timeline g.lane[data-key="{k}"] rect.bar').bounding_box() for k in got]
    assert bars[0] is not None
    assert bars[1] is not None
    assert bars[1]["x"] < bars[0]["x"] + bars[0]["width"]
    assert page.locator("svg.timeline line.now").count() == 1
    shot(page, "subject-timeline", full=False)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("figure.timeline-box").screenshot(path=str(SHOTS / "timeline.png"))
    assert page.errors == []


def test_hostile_event_text_shows_as_text_and_runs_nothing(net: Net, browser: Any) -> None:
    # No CSP in this context: escaping alone must hold (the CSP is a second line, tested above).
    context = browser.new_context(bypass_csp=True)
    try:
        p = context.new_page()
        dialogs: list[str] = []
        p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        for api in net.apis:
            p.goto(f"{api}/subjects/{net.hostile.hex}")
            p.wait_for_load_state("load")  # after every image's load or error event: an onerror would have run
            assert p.locator("pre.meta").inner_text() == HOSTILE
            assert "</title><script>" in p.locator("table.log").inner_text()  # the reason, as text
            injected = p.evaluate(
                "() => ['pwn-img', 'pwn-svg', 'pwn-a'].filter(id => document.getElementById(id))"
                ".concat(Array.from(document.scripts).filter(s => !s.src).map(s => 'inline script'))"
                ".concat(document.querySelectorAll('svg.timeline script, svg.timeline a[href^=javascript]').length"
                " ? ['svg script'] : [])"
            )
            assert injected == []
            assert len(p.evaluate("Array.from(document.scripts).map(s => s.src)")) == 1  # ours only
            lane = lanes(p)["k-second"]
            assert lane["endedBy"] == "revoked-controllers"
            # Hostile text in the query string comes back escaped (or refused), never as markup.
            for url in (
                f"{api}/keys?subject={net.hostile.hex}&key=k-first&at=%3Cscript%3Ealert(4)%3C/script%3E",
                f"{api}/search?q=%22%3E%3Cimg%20src=x%20onerror=alert(5)%20id=pwn-img%3E",
                f"{api}/subjects/%3Csvg%20onload=alert(6)%3E",
            ):
                p.goto(url)
                p.wait_for_load_state("load")
                assert p.evaluate("document.getElementById('pwn-img')") is None
        assert dialogs == []
    finally:
        context.close()


def _install_wallet(page: Any, key: bytes, chain_id: int) -> list[dict[str, Any]]:
    """An injected EIP-1193 wallet (window.ethereum) whose signing runs here, holding ``key``."""
    account = Account.from_key(key)
    calls: list[dict[str, Any]] = []

    def request(method: str, params_json: str) -> Any:
        params = json.loads(params_json)
        calls.append({"method": method, "params": params})
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [account.address]
        if method == "eth_chainId":
            return hex(chain_id)
        if method == "eth_signTypedData_v4":
            signer, typed = params[0], json.loads(params[1])
            assert signer.lower() == account.address.lower()
            assert typed["domain"]["chainId"] == chain_id
            # Like a wallet: uint values may come as decimal strings.
            fields = {f["name"]: f["type"] for f in typed["types"][typed["primaryType"]]}
            message = {k: int(v) if fields[k].startswith("uint") else v for k, v in typed["message"].items()}
            signed = Account.sign_typed_data(key, full_message={**typed, "message": message})
            return "0x" + bytes(signed.signature).hex()
        raise ValueError(f"test wallet: unsupported method {method}")

    page.expose_function("keyregTestWallet", request)
    page.add_init_script(
        "window.ethereum = { isKeyregTestWallet: true, request: ({ method, params }) =>"
        " window.keyregTestWallet(method, JSON.stringify(params || [])) };"
    )
    return calls


def test_wallet_ballot_is_relayed_and_counted_then_revocation_shows_on_every_node(
    net: Net, browser: Any, page: Any
) -> None:
    w3 = connect(net.info["rpc"])
    members = [(address_of(k), 1) for k in MEMBERS]
    dao = deploy_dao(w3, DEPLOYER, net.info["registry"], members, name="explorer DAO", voting_period=VOTING_PERIOD)
    now = int(w3.eth.get_block("latest")["timestamp"])
    key_id = "svc-governed"
    subject = create_governed_subject(w3, net.domain, net.apis[0], dao.executor, DEPLOYER, key_id, now - 3600)
    sid = "0x" + subject.hex()
    gov = Governance(w3, dao.governor)
    effective_at = now - 600
    pid, _ = gov.propose_revocation(MEMBERS[0], subject, key_id, effective_at, "key leaked (explorer test)")
    mine(w3, dao.voting_delay + 1)
    gov.cast_vote(MEMBERS[0], pid, 1)
    relay_api = net.apis[1]
    wait_for(
        lambda: (
            (p := httpx.get(f"{relay_api}/v1/gov/proposals/{pid}", timeout=5).json())["state"] == "Active"
            and p["quorum"] is not None
            and len(p["voters"]) == 1
        ),
        TIMEOUT,
        "the second node to index the open proposal and the first vote",
    )

    # Member 1 (no ETH) votes in the page through the injected wallet; node 2 relays the ballot.
    voter = "0x" + address_of_private_key(MEMBERS[1]).hex()
    calls = _install_wallet(page, MEMBERS[1], int(net.info["chainId"]))
    page.goto(f"{relay_api}/proposals/{pid}?governor={dao.governor}")
    page.get_by_role("button", name="Vote for").click()
    # The page ends on one of its final messages: relayed, not relayed, not sent, or still queued.
    page.wait_for_function(
        "() => /^(relayed:|not relayed|vote not sent|the ballot is still queued|No browser wallet)/"
        ".test(document.getElementById('vote-status').textContent)",
        timeout=2 * TIMEOUT * MS,
    )
    final = page.locator("#vote-status").inner_text()
    assert final.startswith("relayed:"), (final, calls, httpx.get(f"{relay_api}/v1/gov/ballots", timeout=5).text)
    assert [c["method"] for c in calls] == ["eth_requestAccounts", "eth_signTypedData_v4"]
    assert gov.has_voted(pid, voter)  # counted on-chain
    assert gov.votes(pid)["for"] == 2
    page.locator('#tallies [data-field="votes.for"]').filter(has_text="2").wait_for()
    shot(page, "proposal")
    assert page.errors == []

    mine(w3, VOTING_PERIOD + 1)
    assert gov.state(pid) == "Succeeded"
    gov.execute(DEPLOYER, pid)
    for api in net.apis:  # every node's explorer draws the DAO's revocation, linked to the proposal
        wait_for(
            lambda api=api: (
                httpx.get(f"{api}/v1/subjects/{sid}/keys/{key_id}", params={"at": now}, timeout=5).json()["status"]
                == "revoked"
            ),
            TIMEOUT,
            f"{api} to apply the governance revocation",
        )
        page.goto(f"{api}/subjects/{sid}")
        lane = lanes(page)[key_id]
        assert lane["endedBy"] == "revoked-governance"
        assert lane["end"] == str(effective_at)
        mark = page.locator(f'svg.timeline g.lane[data-key="{key_id}"] path.mark-revoked-governance')
        assert mark.get_attribute("data-proposal") == str(pid)
        href = page.locator(f'svg.timeline g.lane[data-key="{key_id}"] a').get_attribute("href")
        assert href is not None
        assert href.endswith(f"/proposals/{pid}")
        assert f"proposal {str(pid)[:8]}" in page.locator("main").inner_text()
    shot(page, "subject-governance")
    assert page.errors == []


def test_axe_finds_no_serious_or_critical_violation(net: Net, browser: Any) -> None:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci --prefix contracts`")
    api, sid = net.apis[0], net.rotated.hex
    urls = [
        f"{api}/",
        f"{api}/subjects/{sid}",
        f"{api}/keys?subject={sid}&key=svc-2026-11",
        f"{api}/proposals",
        f"{api}/anchors",
    ]
    proposals = httpx.get(f"{api}/v1/gov/proposals", timeout=5).json().get("proposals", [])
    if proposals:
        p0 = proposals[0]
        urls.append(f"{api}/proposals/{p0['proposalId']}?governor={p0['governor']}")
    found = []
    for scheme in ("light", "dark"):
        context = browser.new_context(bypass_csp=True, color_scheme=scheme)  # axe is injected as a script
        try:
            p = context.new_page()
            for url in urls:
                p.goto(url)
                p.add_script_tag(path=str(AXE))
                violations = p.evaluate(
                    "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                    ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length}))"
                )
                found += [(scheme, url, v) for v in violations if v["impact"] in ("serious", "critical")]
        finally:
            context.close()
    assert found == []


def test_static_assets_are_cached_and_small(net: Net) -> None:
    api = net.apis[0]
    html = httpx.get(f"{api}/subjects/{net.rotated.hex}", timeout=5)
    total = len(html.content)
    for path in ("explorer.css", "explorer.js", "favicon.svg"):
        r = httpx.get(f"{api}/static/{path}", timeout=5)
        assert r.status_code == 200
        assert r.headers["etag"]
        again = httpx.get(f"{api}/static/{path}", headers={"if-none-match": r.headers["etag"]}, timeout=5)
        assert again.status_code == 304
        total += len(r.content)
    assert total < 150 * 1024  # the first-load budget
