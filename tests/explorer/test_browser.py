"""The explorer in a real browser (Debian's chromium, Playwright) against a devnet of real nodes.

Every page loads without console errors; search finds a subject by each kind of key; a rotated
subject's timeline shows both keys overlapping; hostile event text shows as text and runs nothing;
a ballot signed in the page by an injected EIP-1193 wallet is relayed and counted on-chain, and
the DAO's revocation then shows on the timeline of every node's explorer; a 2-of-3 signing ceremony
signed in the page by two controllers' wallets reaches its threshold and is applied, and a wallet
outside the signer set gets the node's refusal; axe-core finds no serious or critical accessibility
violation. Screenshots go to a temporary folder, or to the folder
named by KEYREG_SCREENSHOTS_DIR (``KEYREG_SCREENSHOTS_DIR=docs/explorer`` refreshes the documentation's),
so a test run never rewrites tracked files.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from explorer_fixture import HOSTILE, HOSTILE_REASON, TIMEOUT, Net

from keyreg.cli.devnet import anvil_account_key
from keyreg.core import builder
from keyreg.core.codec import event_to_obj
from keyreg.core.eip712 import event_digest
from keyreg.core.hashing import address_of_private_key
from keyreg.core.records import PublishedKey, SignedEvent
from keyreg.gov.contracts import Governance, address_of, connect, deploy_dao
from keyreg.gov.scenario import create_governed_subject, mine, wait_for

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
        "ceremonies": f"{api}/ceremonies",
        "ceremony": f"{api}/ceremonies/{_hostile_proposals(net)[0]}",
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
        # Proposals carry attacker text too (metadata, a revocation's reason): shown as text, inert.
        meta_id, reason_id = _hostile_proposals(net)
        api = net.apis[0]  # proposals are node-local: the node they were given to
        for url, shown in (
            (f"{api}/ceremonies/{meta_id}", HOSTILE),
            (f"{api}/ceremonies/{reason_id}", HOSTILE_REASON),
            (f"{api}/ceremonies", None),
            (f"{api}/ceremonies?subject={net.hostile.hex}", None),
            (f"{api}/subjects/{net.hostile.hex}", None),
        ):
            p.goto(url)
            p.wait_for_load_state("load")
            if shown == HOSTILE:
                assert p.locator("pre.meta").inner_text() == HOSTILE
            elif shown is not None:
                assert p.locator("q.reason").inner_text() == HOSTILE_REASON
            injected = p.evaluate(
                "() => ['pwn-img', 'pwn-svg', 'pwn-a'].filter(id => document.getElementById(id))"
                ".concat(Array.from(document.scripts).filter(s => !s.src).map(s => 'inline script'))"
            )
            assert injected == [], url
            assert len(p.evaluate("Array.from(document.scripts).map(s => s.src)")) == 1, url
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


def _uints(types: dict[str, Any], type_name: str, value: Any) -> Any:
    """``value`` of EIP-712 type ``type_name`` with every uint given as a decimal string made an int."""
    if type_name.endswith("[]"):
        return [_uints(types, type_name[:-2], v) for v in value]
    if type_name in types:
        fields = {f["name"]: f["type"] for f in types[type_name]}
        return {k: _uints(types, fields[k], v) for k, v in value.items()}
    if type_name.startswith("uint") and isinstance(value, str):
        return int(value)
    return value


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
            # Like a wallet: uint values may come as decimal strings, at any depth.
            message = _uints(typed["types"], typed["primaryType"], typed["message"])
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


_HOSTILE_IDS: dict[int, tuple[str, str]] = {}


def _hostile_proposals(net: Net) -> tuple[str, str]:
    """Two proposals on the hostile subject held by node 0 (made once; 200 when held already): an
    update setting hostile metadata, and a revocation with a hostile reason. Their ids."""
    if id(net) in _HOSTILE_IDS:
        return _HOSTILE_IDS[id(net)]
    s = net.hostile
    now = int(time.time())
    seq, head = len(s.signed), s.head()
    events = (
        builder.update(s.sid, seq, head, now, metadata=HOSTILE),
        builder.revocation(s.sid, seq, head, now, "k-first", now, HOSTILE_REASON),
    )
    ids = []
    for ev in events:
        digest = "0x" + event_digest(net.domain, ev).hex()
        if httpx.get(f"{net.apis[0]}/v1/proposals/{digest}", timeout=5).status_code != 200:
            body = {"event": event_to_obj(SignedEvent(ev, (), net.domain))}
            r = httpx.post(f"{net.apis[0]}/v1/proposals", json=body, timeout=10)
            assert r.status_code == 201, r.text
        ids.append(digest)
    _HOSTILE_IDS[id(net)] = (ids[0], ids[1])
    return ids[0], ids[1]


def _sign_in_page(browser: Any, url: str, key: bytes, chain_id: int, name: str | None = None) -> tuple[str, Any]:
    """Open a ceremony in a fresh page whose injected wallet holds ``key``, press "Sign with a
    wallet", and return the page's final message (and the wallet's calls)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        p = context.new_page()
        p.set_default_timeout(TIMEOUT * MS)
        errors: list[str] = []
        p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        p.on("pageerror", lambda e: errors.append(str(e)))
        calls = _install_wallet(p, key, chain_id)
        p.goto(url)
        p.get_by_role("button", name="Sign with a wallet").click()
        p.wait_for_function(
            "() => /^(applied:|attached:|refused by the node|not applied|not signed|No browser wallet)/"
            ".test(document.getElementById('sign-status').textContent)"
        )
        final = p.locator("#sign-status").inner_text()
        if name is not None:
            shot(p, name)
        # A refusal is an HTTP error answer, which chromium logs as a failed resource load; nothing else.
        assert [e for e in errors if "Failed to load resource" not in e] == [], errors
        return final, (calls, p.locator("#c-signed").inner_text(), p.locator("#c-state").inner_text())
    finally:
        context.close()


def test_wallet_ceremony_2_of_3_reaches_its_threshold_and_is_applied(net: Net, browser: Any) -> None:
    api, chain_id = net.apis[0], int(net.info["chainId"])
    controllers = [secrets.token_bytes(32) for _ in range(3)]
    addresses = builder.controller_set(controllers)
    now = int(time.time())
    first = PublishedKey("ceremony-2026-11", "Ed25519", secrets.token_bytes(32), ("sig",), now - 600, 0)
    inception = builder.inception(now - 600, addresses, 2, keys=[first], metadata="a 2-of-3 subject")
    signed = builder.sign_event(net.domain, inception, controllers[:2])
    sid = "0x" + event_digest(net.domain, inception).hex()
    r = httpx.post(f"{api}/v1/events", json={"events": [event_to_obj(signed)]}, timeout=10)
    assert r.json()["accepted"] == 1, r.text
    # The proposal: publish the next key now, retire the first in an hour (a zero-downtime rotation).
    second = PublishedKey("ceremony-2026-12", "Ed25519", secrets.token_bytes(32), ("sig",), now, now + 90 * 86400)
    update = builder.update(
        bytes.fromhex(sid[2:]), 1, bytes.fromhex(sid[2:]), now, publish=[second], retire=[(first.key_id, now + 3600)]
    )
    r = httpx.post(f"{api}/v1/proposals", json={"event": event_to_obj(SignedEvent(update, (), net.domain))}, timeout=10)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    url = f"{api}/ceremonies/{pid}"

    # A wallet outside the signer set: the page hands its signature in and shows the node's refusal.
    outsider = secrets.token_bytes(32)
    final, _ = _sign_in_page(browser, url, outsider, chain_id)
    assert final.startswith("refused by the node (unauthorized_signer): signer 0x"), final
    assert f"0x{address_of_private_key(outsider).hex()} is not one of the controllers" in final

    # The first controller: attached, one more needed; the page lists the signer.
    final, (calls, signed_list, state) = _sign_in_page(browser, url, controllers[2], chain_id, name="ceremony")
    assert final.startswith("attached: 1 of 2 signatures; 1 more needed"), final
    assert [c["method"] for c in calls] == ["eth_requestAccounts", "eth_signTypedData_v4"]
    assert calls[1]["params"][1] == httpx.get(f"{url}/typed-data.json", timeout=5).text  # the node's text, untouched
    assert "0x" + address_of_private_key(controllers[2]).hex() in signed_list
    assert state == "collecting"
    held = httpx.get(f"{api}/v1/proposals/{pid}", timeout=5).json()
    assert (held["missing"], held["submitted"]) == (1, None)

    # The second controller reaches the threshold: the node applies the event.
    final, (_, signed_list, state) = _sign_in_page(browser, url, controllers[0], chain_id, name="ceremony-applied")
    assert state == "applied"
    assert all("0x" + a.hex() in signed_list for a in builder.controller_set([controllers[0], controllers[2]]))
    assert final.startswith(
        f"applied: the threshold is reached and the node accepted the update at seq 1; the subject's head is now {pid}"
    ), final
    for node in net.apis:  # the new head on this node, and by gossip on the other
        wait_for(
            lambda node=node: httpx.get(f"{node}/v1/subjects/{sid}", timeout=5).json()["head"] == pid,
            TIMEOUT,
            f"{node} to hold the ceremony's event as {sid}'s head",
        )
    view = httpx.get(f"{api}/v1/subjects/{sid}", timeout=5).json()
    assert view["seq"] == 1
    assert {k["keyId"] for k in view["keys"]} == {first.key_id, second.key_id}
    page = browser.new_page()
    try:
        page.goto(url)  # the ceremony's own page now says so, server-rendered
        assert "Threshold reached: this node applied the event (accepted, seq 1)" in page.locator("main").inner_text()
        assert page.locator("#wallet-sign").count() == 0
        page.goto(f"{api}/subjects/{sid}")
        assert pid[:10] in page.locator("main .card").nth(1).inner_text()  # the head, shortened
        assert set(lanes(page)) == {first.key_id, second.key_id}
    finally:
        page.close()


def test_ceremony_pages_without_a_wallet_say_what_to_run(net: Net, page: Any) -> None:
    meta_id, _ = _hostile_proposals(net)
    api = net.apis[0]
    page.goto(f"{api}/ceremonies/{meta_id}")  # no window.ethereum in this page
    page.get_by_role("button", name="Sign with a wallet").click()
    page.locator("#sign-status").filter(has_text="No browser wallet found").wait_for()
    cli = page.locator("#cmd-keyfile").inner_text()
    assert cli.startswith(f"keyreg event fetch {meta_id} --node {api} --out proposal.json")
    assert "keyreg event sign proposal.json --key-file" in cli
    assert "cast wallet sign --data --from-file typed.json" in page.locator("#cmd-cast").inner_text()
    page.goto(f"{api}/ceremonies")
    assert page.locator(f'a[href="/ceremonies/{meta_id}"]').count() == 1
    shot(page, "ceremonies")
    assert page.errors == []
    # A phone, in dark mode: the ceremony page fits its width.
    phone = page.context.browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        p = phone.new_page()
        p.goto(f"{api}/ceremonies/{meta_id}")
        width = p.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the ceremony page is {width}px wide on a 390px phone"
        shot(p, "ceremony-phone-dark")
    finally:
        phone.close()


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
        f"{api}/ceremonies",
        f"{api}/ceremonies/{_hostile_proposals(net)[0]}",
        f"{api}/ceremonies/{_hostile_proposals(net)[1]}",
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
