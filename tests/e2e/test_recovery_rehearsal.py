"""Issue 16 item 4: the recovery, rehearsed (docs/recovery.md is the runbook this test follows).

A devnet: anvil with the v2 KeyRegistry, node A (the subject's node, holding only its operator key)
and node B, real `keyreg node run` processes over libp2p; node C, made later for the new operator
with `keyreg init --subject`, joins and syncs at the end. Every command is the real CLI.

1. A 2-of-3 subject from `keyreg init` default custody (three controller keyfiles and three next
   keyfiles in a custody dir, nothing of theirs on the node); node A publishes a service key with
   the operator key (`keyreg keys add`) and anchors it directly.
2. Node A is taken. With its data dir and password the attacker publishes a rogue key (within the
   operator limits: accepted), and tries to rotate the controllers, revoke the subject and change
   the operator set: the CLI refuses (no controller keys; the operator key is not a signer of a
   controller proposal), the same events forged with the operator key are rejected by every node
   (the rule's error code), and the registry refuses them when relayed directly.
3. The controllers, from two separate keyfiles (one through `cast wallet sign`), delegate to a fresh
   operator key. The attacker races: an operator-signed update at that seq, anchored directly first.
   The controllers' delegation takes the seq back (fork choice rule 4 on every node, `supersede` on
   the contract); then they revoke the rogue key from the compromise time and anchor directly.
4. Every node (A, B, and C synced from scratch) reports the rogue key revoked; a JWT the rogue key
   signs is refused by a relying party on the JWKS and verdict API, and by the offline bundle
   verifier (`keyreg export`, `keyreg verify`, `keyreg verify-signature` with a pinned checkpoint);
   the old operator's next update is refused by the CLI, every node and the contract, while the new
   operator's node publishes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rehearsal_support import (
    CAST,
    TIMEOUT,
    anchor_directly,
    anchored_directly,
    as_json,
    cast_sign,
    chain_head,
    contract_accepts,
    contract_refuses,
    event_at,
    head_of,
    jwks_verdict,
    keyreg,
    now,
    post_event,
    refusal,
    sign_jwt,
    verdict,
    view,
    wait_head,
)

from keyreg.chain.deploy import anvil_binary, call_for, free_port
from keyreg.cli.devnet import _stop_pid, anvil_account_key, devnet_down, devnet_up
from keyreg.config import DEVNET_REGISTRY, load_config
from keyreg.core import builder
from keyreg.core.codec import event_from_obj, event_to_obj
from keyreg.core.hashing import address_of_private_key
from keyreg.core.records import PublishedKey
from keyreg.keys.keystore import Keystore, Password
from keyreg.keys.testing import DrillNode, wait_for
from keyreg.verify import Verifier

pytestmark = [pytest.mark.e2e, pytest.mark.anvil, pytest.mark.slow]

KDF_N = "1024"  # throwaway keyfiles: a cheap scrypt, as on every devnet


@pytest.fixture
def devnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """anvil + KeyRegistry v2 + node A (2-of-3 subject, default custody) + node B."""
    if not anvil_binary().exists():
        pytest.skip(f"anvil binary missing at {anvil_binary()}: run `npm ci --prefix contracts`")
    if not CAST.exists():
        if os.environ.get("CI"):
            pytest.fail(f"cast missing at {CAST}: run `npm ci --prefix contracts`")
        pytest.skip(f"cast missing at {CAST}: run `npm ci --prefix contracts`")
    monkeypatch.setenv("KEYREG_KDF_N", KDF_N)  # devnet_up sets it too; restored after the test
    directory = tmp_path / "devnet"
    directory.mkdir()
    secrets_dir = tmp_path / "passwords"  # each holder's password, in a file of their own
    secrets_dir.mkdir()
    pw: dict[str, Path] = {}
    for name in ("node", "c1", "c2", "c3", "n1", "n2", "n3", "fresh"):
        pw[name] = secrets_dir / f"{name}.pw"
        pw[name].write_text(f"rehearsal password of {name}\n")
    (directory / "password").write_text(pw["node"].read_text())  # the devnet's nodes share it
    env = {"NO_COLOR": "1", "COLUMNS": "200", "KEYREG_KDF_N": KDF_N}
    custody = tmp_path / "custody"  # in real life: three people and a safe, not this machine
    args = ["init", "-d", str(directory / "node1"), "--controllers", "3", "--threshold", "2"]
    args += ["--custody-dir", str(custody), "--password-file", str(pw["node"]), "--json"]
    args += ["--operator-max-validity", "2h", "--operator-max-keys", "8"]
    args += ["--chain-id", "31337", "--registry", DEVNET_REGISTRY]
    for i in (1, 2, 3):
        args += ["--controller-password-file", str(pw[f"c{i}"]), "--next-password-file", str(pw[f"n{i}"])]
    init = as_json(keyreg(env, *args))
    chain = {"confirmations": 1, "poll_interval_s": 0.3, "anchor_epoch_s": 2.0, "retry_max_s": 1.0}
    try:
        info = devnet_up(directory, nodes=2, port=free_port(), block_time=1.0, chain=chain, progress=False)
        assert info["registry"] == DEVNET_REGISTRY  # the address node A's inception was signed for
        yield {"info": info, "init": init, "pw": pw, "env": env, "custody": custody, "tmp": tmp_path}
    finally:
        devnet_down(directory)


def test_recovery_rehearsal(devnet: dict[str, Any], request: pytest.FixtureRequest) -> None:
    info, init, pw, env = devnet["info"], devnet["init"], devnet["pw"], devnet["env"]
    tmp: Path = devnet["tmp"]
    rpc, registry = info["rpc"], info["registry"]
    node_a, node_b = info["nodes"]
    dir_a = Path(node_a["dataDir"])
    a, b = node_a["api"], node_b["api"]
    node_env = {**env, "KEYREG_PASSWORD": pw["node"].read_text().strip()}
    domain = load_config(dir_a).domain

    # ---- 1. the subject, as `keyreg init` left it: the node holds the operator key only ------------
    assert init["mode"] == "operator"
    files = {(f["role"], int(f["index"])): Path(f["path"]) for f in init["files"]}
    assert sorted(files) == [("controller", 1), ("controller", 2), ("controller", 3), ("next", 1), ("next", 2),
                             ("next", 3)]  # fmt: skip
    assert all(p.parent == devnet["custody"] for p in files.values())
    old_operator = init["operator"]["operators"][0]
    created = as_json(keyreg(node_env, "subject", "create", "-d", str(dir_a), "--node", a, "--json"))
    sid = created["subject"]
    wait_for(lambda: view(b, sid), TIMEOUT, "the inception to reach node B by gossip")
    subject_view = view(b, sid)
    assert subject_view is not None
    assert subject_view["threshold"] == 2
    assert len(subject_view["controllers"]) == 3
    assert subject_view["operators"]["operators"] == [old_operator]

    legit = as_json(keyreg(node_env, "keys", "add", "-d", str(dir_a), "--node", a, "--key-id", "svc-legit",
                           "--not-after", "+1h", "--json"))  # fmt: skip
    assert legit["keyId"] == "svc-legit"
    seq, legit_head = head_of(a, sid)  # type: ignore[misc]
    assert seq == 1
    assert view(a, sid)["headAuthority"] == "operators"  # type: ignore[index]
    keyreg(node_env, "anchor", sid, "--direct", "-d", str(dir_a), "--timeout", str(TIMEOUT), "--json")
    wait_for(lambda: all(anchored_directly(n, sid, 1, legit_head) for n in (a, b)), TIMEOUT,
             "the operator's update anchored directly, seen by both nodes")  # fmt: skip
    assert chain_head(rpc, registry, sid) == (1, legit_head)

    # ---- 2. node A is taken: its data dir and its password are the attacker's -----------------------
    compromise = now()  # from here on, anything signed with what node A holds is the attacker's
    keyreg(node_env, "keys", "add", "-d", str(dir_a), "--node", a, "--key-id", "svc-rogue", "--not-after", "+1h",
           "--json")  # fmt: skip
    seq, rogue_head = head_of(a, sid)  # type: ignore[misc]
    assert seq == 2
    wait_head([a, b], sid, 2, rogue_head, "the rogue key on both nodes (operator-signed, within the limits)")
    keyreg(node_env, "anchor", sid, "--direct", "-d", str(dir_a), "--timeout", str(TIMEOUT), "--json")
    wait_for(lambda: all(anchored_directly(n, sid, 2, rogue_head) for n in (a, b)), TIMEOUT,
             "the rogue key anchored directly by the attacker (anchorOperatorUpdate)")  # fmt: skip
    assert chain_head(rpc, registry, sid) == (2, rogue_head)
    stolen = Keystore.open(dir_a / "keystore").unlock(Password(node_env["KEYREG_PASSWORD"]))
    rogue_secret = stolen.service_key("svc-rogue").secret
    operator_secret = stolen.operator_secret()
    before = sign_jwt(rogue_secret, "svc-rogue", {"sub": "attacker", "iat": now()})
    assert jwks_verdict(b, sid, before) is None  # the threat is real: until the controllers act, it passes

    # (a) rotate the controllers, (b) revoke (a key, or the whole subject), (c) change the operator set,
    # with everything on the node: the CLI has no controller key to sign with
    refused = refusal(keyreg(node_env, "subject", "rotate-controllers", "-d", str(dir_a), "--node", a, "--json",
                             ok=False))  # fmt: skip
    assert refused["code"] == "controllers_off_node", refused
    refused = refusal(keyreg(node_env, "keys", "revoke", "svc-legit", "-d", str(dir_a), "--node", a, "--json",
                             ok=False))  # fmt: skip
    assert refused["code"] == "controllers_off_node", refused
    operator_file = dir_a / "keystore" / "operator" / "op-00.json"
    evil = tmp / "attacker"
    evil.mkdir()
    attacker_operator = address_of_private_key(b"\x77" * 32)
    for kind, extra in (
        ("revocation", ["--whole-subject", "--reason", "mine now"]),
        ("delegation", ["--operator", "0x" + attacker_operator.hex(), "--operator-threshold", "1",
                        "--operator-purpose", "sig", "--max-validity", "30d", "--max-keys", "16"]),
    ):  # fmt: skip
        p = evil / f"{kind}.json"
        keyreg(env, "event", "propose", kind, "--subject", sid, "--node", a, "--out", str(p), "-d", str(dir_a),
               *extra)  # fmt: skip
        refused = refusal(keyreg(env, "event", "sign", str(p), "--key-file", str(operator_file), "--password-file",
                                 str(pw["node"]), "--json", ok=False))  # fmt: skip
        # refused before it signs: the operator is not one of the controllers the proposal collects for
        assert refused["code"] == "unauthorized_signer", (kind, refused)
        assert "not one of" in refused["message"], refused
    # ... and the same events forged with the operator key: every node rejects them, so does the registry
    state = view(b, sid)
    assert state is not None
    subject, head, t = bytes.fromhex(sid[2:]), bytes.fromhex(state["head"][2:]), now()
    controllers = [bytes.fromhex(c[2:]) for c in state["controllers"]]
    forged = {
        "rotation": builder.rotation(subject, 3, head, t, [address_of_private_key(operator_secret)], 1, None),
        "revocation": builder.revocation(subject, 3, head, t, "", t, "mine now"),
        "delegation": builder.delegation(subject, 3, head, t, builder.operator_set([attacker_operator], 1, ["sig"],
                                                                                   30 * 86400, 16)),
    }  # fmt: skip
    codes: dict[str, list[str]] = {}
    reverts: dict[str, str] = {}
    for kind, event in forged.items():
        signed = builder.sign_event(domain, event, [operator_secret])
        results = [post_event(n, event_to_obj(signed)) for n in (a, b)]
        assert all(r["status"] == "rejected" for r in results), (kind, results)
        codes[kind] = [r["error"]["code"] for r in results]
        name, call = call_for(signed, controllers, 2)  # claims the real controller set, signed by the operator
        reverts[kind] = contract_refuses(rpc, registry, anvil_account_key(9), name, call)
        if kind != "rotation":  # or claims the operator is the controller set (1 of 1)
            name, call = call_for(signed, [address_of_private_key(operator_secret)], 1)
            reverts[kind + " as 1-of-1"] = contract_refuses(rpc, registry, anvil_account_key(9), name, call)
    # a rotation must reveal the pre-committed next set, which never was on the node
    assert codes == {"rotation": ["commitment_mismatch"] * 2, "revocation": ["unauthorized_signer"] * 2,
                     "delegation": ["unauthorized_signer"] * 2}, codes  # fmt: skip
    assert reverts == {"rotation": "CommitmentMismatch", "revocation": "BelowThreshold",
                       "revocation as 1-of-1": "ControllersMismatch", "delegation": "BelowThreshold",
                       "delegation as 1-of-1": "ControllersMismatch"}, reverts  # fmt: skip
    assert head_of(a, sid) == head_of(b, sid) == (2, rogue_head)

    # ---- 3. the controllers act, from their own machines, through ceremonies ----------------------
    # a fresh operator key for a new node (its data dir holds nothing else)
    dir_c = tmp / "node-c"
    fresh = as_json(keyreg(env, "init", "--subject", sid, "-d", str(dir_c), "--password-file", str(pw["fresh"]),
                           "--operator-max-validity", "2h", "--operator-max-keys", "8", "--chain-id", "31337",
                           "--registry", DEVNET_REGISTRY, "--json"))  # fmt: skip
    new_ops = fresh["operator"]
    assert new_ops["operators"] != [old_operator]
    people = tmp / "controllers"  # the controllers' own machine: no keyreg data dir of a node
    people.mkdir()
    cli = ["-d", str(people / "keyreg")]
    delegation = people / "delegation.json"
    keyreg(env, "event", "propose", "delegation", "--subject", sid, "--node", b, "--out", str(delegation), *cli,
           *[x for o in new_ops["operators"] for x in ("--operator", o)],
           "--operator-threshold", str(new_ops["threshold"]),
           *[x for p in new_ops["purposes"] for x in ("--operator-purpose", p)],
           "--max-validity", str(new_ops["maxValidity"]), "--max-keys", str(new_ops["maxKeys"]))  # fmt: skip
    # controller 1 signs with its keyfile; controller 2 with Foundry's cast (as a Ledger would)
    keyreg(env, "event", "sign", str(delegation), "--key-file", str(files["controller", 1]), "--password-file",
           str(pw["c1"]))  # fmt: skip
    typed = people / "delegation.typed.json"
    typed.write_text(keyreg(env, "event", "typed-data", str(delegation)).stdout)
    signature = cast_sign(typed, files["controller", 2], pw["c2"])
    assert as_json(keyreg(env, "event", "attach", str(delegation), "--signature", signature, "--json"))["complete"]
    delegation_id = json.loads(delegation.read_text())["id"]

    # The attacker races for seq 3. From here on they run node A their own way: restarted without the
    # chain, so that it relays nothing of the controllers' (an honest node A would anchor them).
    _stop_pid(int(node_a["pid"]), "keyreg.cli.node")
    attacker_node = DrillNode(dir_a, node_env["KEYREG_PASSWORD"], {"KEYREG_KDF_N": KDF_N})
    request.addfinalizer(attacker_node.stop)
    attacker_node.start(bootstrap=node_b["p2p"][:1])
    a = attacker_node.api
    wait_for(lambda: attacker_node.health()["services"]["p2p"]["peers"] >= 1, TIMEOUT, "node A back among its peers")
    keyreg(node_env, "keys", "add", "-d", str(dir_a), "--node", a, "--key-id", "svc-rogue-2", "--not-after", "+1h",
           "--json")  # fmt: skip
    seq, raced = head_of(a, sid)  # type: ignore[misc]
    assert seq == 3
    wait_head([a, b], sid, 3, raced, "the attacker's racing update on both nodes")
    raced_event = event_from_obj(event_at(a, sid, 3), domain=domain)  # the attacker keeps it
    # the ceremony tool will not send a proposal for a head that moved on ...
    refused = refusal(keyreg(env, "event", "submit", str(delegation), "--node", b, *cli, "--json", ok=False))
    assert refused["code"] == "stale_proposal", refused
    # ... but the signed delegation still competes at seq 3, and wins on every node: neither competitor
    # is anchored, and a controller-signed event beats operator-signed ones (fork choice rule 4)
    competed = keyreg(env, "event", "submit", str(delegation), "--compete", "--node", b, *cli, "--json")
    result = json.loads(competed.stdout)["result"]
    assert (result["status"], result["digest"], result.get("switched")) == ("duplicity", delegation_id, True), result
    wait_head([a, b], sid, 3, delegation_id, "fork choice rule 4: the delegation is the head at seq 3 on both nodes")
    # the attacker anchors the racing update directly first: the registry's head decides (rule 1) ...
    name, call = call_for(raced_event, [bytes.fromhex(old_operator[2:])], 1, by_operators=True)
    contract_accepts(rpc, registry, anvil_account_key(9), name, call)
    assert chain_head(rpc, registry, sid) == (3, raced)
    wait_for(lambda: head_of(b, sid) == (3, raced), TIMEOUT, "node B to follow the registry's head (rule 1)")
    # ... until the controllers anchor theirs: `supersede` replaces an operator-signed registry head
    # with the controller-signed event at its seq, and every node follows
    anchors = [anchor_directly(env, node_b["dataDir"], rpc, registry, sid, 3, delegation_id)]
    wait_for(lambda: anchored_directly(b, sid, 3, delegation_id), TIMEOUT, "node B back on the delegation")
    assert head_of(a, sid) == (3, delegation_id)  # node A, off the chain, never left it (rule 4)
    for n in (a, b):
        state = view(n, sid)
        assert state is not None
        assert state["operators"]["operators"] == new_ops["operators"]
        assert state["headAuthority"] == "controllers"
        assert verdict(n, sid, "svc-rogue-2")["status"] == "unknown-key"  # the loser's key is not the subject's

    # the rogue key, revoked from the moment the node was taken (before it was published)
    revocation = people / "revocation.json"
    keyreg(env, "event", "propose", "revocation", "--subject", sid, "--node", b, "--out", str(revocation), *cli,
           "--key-id", "svc-rogue", "--effective-at", str(compromise), "--reason", "node A compromised")  # fmt: skip
    for i in (1, 3):  # two other holders this time, each from their own keyfile
        keyreg(env, "event", "sign", str(revocation), "--key-file", str(files["controller", i]), "--password-file",
               str(pw[f"c{i}"]))  # fmt: skip
    submitted = as_json(keyreg(env, "event", "submit", str(revocation), "--node", b, *cli, "--json"))
    assert submitted["result"]["status"] == "accepted", submitted
    revocation_id = submitted["result"]["digest"]
    anchors.append(anchor_directly(env, node_b["dataDir"], rpc, registry, sid, 4, revocation_id))
    assert set(anchors) <= {"anchored", "raced"}, anchors
    wait_head([a, b], sid, 4, revocation_id, "the revocation on both nodes")
    wait_for(lambda: anchored_directly(b, sid, 4, revocation_id), TIMEOUT, "node B to see the revocation anchored")
    assert chain_head(rpc, registry, sid) == (4, revocation_id)

    # ---- 4. every node, a node that joins later, and an offline verifier reject the rogue key ------
    after = now()
    token = sign_jwt(rogue_secret, "svc-rogue", {"sub": "attacker", "iat": after})
    legit_token = sign_jwt(stolen.service_key("svc-legit").secret, "svc-legit", {"sub": "service", "iat": after})
    node_c = DrillNode(dir_c, pw["fresh"].read_text().strip(), {
        "KEYREG_KDF_N": KDF_N, "KEYREG_CHAIN_RPC_URL": rpc, "KEYREG_CHAIN_CONFIRMATIONS": "1",
        "KEYREG_CHAIN_POLL_INTERVAL_S": "0.3", "KEYREG_P2P_SYNC_INTERVAL_S": "1",
    })  # fmt: skip
    try:
        node_c.start(bootstrap=node_b["p2p"][:1])
        c = node_c.api
        wait_for(lambda: anchored_directly(c, sid, 4, revocation_id), TIMEOUT,
                 "node C (new, empty) to sync the subject and see its registry head")  # fmt: skip
        for n in (a, b, c):
            for at in (compromise, after, None):  # from the effective time on, whatever the node's clock
                assert verdict(n, sid, "svc-rogue", at)["status"] == "revoked", (n, at)
            assert verdict(n, sid, "svc-legit")["status"] == "valid"
            kids = {k["kid"] for k in httpx.get(f"{n}/v1/subjects/{sid}/jwks.json", timeout=5).json()["keys"]}
            assert "svc-rogue" not in kids
            assert "svc-legit" in kids
            assert jwks_verdict(n, sid, token) == "unknown kid svc-rogue"
            assert jwks_verdict(n, sid, before) == "unknown kid svc-rogue"  # signed after the effective time too
            assert jwks_verdict(n, sid, legit_token) is None

        # offline: a bundle exported from node B, verified against a pinned block hash, no network
        bundle = tmp / "offline.bundle"
        exported = as_json(keyreg(env, "export", "-d", node_b["dataDir"], "--rpc", rpc, "--subject", sid, "--out",
                                  str(bundle), "--json"))  # fmt: skip
        pin = ["--bundle", str(bundle), "--checkpoint", exported["blockHash"], "--max-staleness", "1h", "--json"]
        checked = keyreg(env, "verify", sid, "svc-rogue", "--at", str(after), *pin, ok=False)
        assert checked.exit_code == 12, checked.stdout + checked.stderr  # revoked
        assert as_json(checked)["verdict"]["status"] == "revoked"
        signing_input, _, sig = token.rpartition(".")
        checked = keyreg(env, "verify-signature", sid, "svc-rogue", "--message", signing_input, "--signature", sig,
                         "--at", str(after), *pin, ok=False)  # fmt: skip
        assert checked.exit_code == 12, checked.stdout + checked.stderr
        signing_input, _, sig = legit_token.rpartition(".")
        checked = keyreg(env, "verify-signature", sid, "svc-legit", "--message", signing_input, "--signature", sig,
                         "--at", str(after), *pin)  # fmt: skip
        assert checked.exit_code == 0
        # the same bundle read with the verifier SDK: who signed what, and the operators in force
        verifier = Verifier.from_bundle(bundle.read_bytes(), exported["blockHash"], max_staleness=3600)
        offline = verifier.view(bytes.fromhex(sid[2:]))
        assert offline is not None
        assert offline.authorities == ("controllers", "operators", "operators", "controllers", "controllers")
        assert ["0x" + o.hex() for o in offline.state.operators.operators] == new_ops["operators"]

        # the stolen operator key signs nothing any more; the new operator's node publishes
        refused = refusal(keyreg(node_env, "keys", "add", "-d", str(dir_a), "--node", a, "--key-id", "svc-rogue-3",
                                 "--not-after", "+1h", "--json", ok=False))  # fmt: skip
        assert refused["code"] == "unauthorized_signer", refused  # the node refused it: not an operator in force
        state = view(b, sid)
        assert state is not None
        t = now()
        late = builder.sign_event(domain, builder.update(
            subject, 5, bytes.fromhex(state["head"][2:]), t,
            publish=[PublishedKey("svc-rogue-3", "Ed25519", bytes(31) + b"\x03", ("sig",), t, t + 600)],
        ), [operator_secret])  # fmt: skip
        results = [post_event(n, event_to_obj(late)) for n in (a, b, c)]
        assert [(r["status"], r["error"]["code"]) for r in results] == [("rejected", "unauthorized_signer")] * 3
        # nor does a bundle that carries it: the offline verifier replays the log and refuses the file
        doc = json.loads(bundle.read_text())
        doc["subjects"][0]["events"].append(event_to_obj(late))
        tampered = tmp / "tampered.bundle"
        tampered.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))
        checked = keyreg(env, "verify", sid, "svc-rogue-3", "--bundle", str(tampered), *pin[2:], ok=False)
        assert checked.exit_code == 20, checked.stdout + checked.stderr  # bundle refused
        error = as_json(checked)["error"]
        assert (error["code"], error["rule"]) == ("bundle_log", "unauthorized_signer"), error
        name, call = call_for(late, [address_of_private_key(operator_secret)], 1, by_operators=True)
        assert contract_refuses(rpc, registry, anvil_account_key(9), name, call) == "OperatorsMismatch"
        new_env = {**env, "KEYREG_PASSWORD": pw["fresh"].read_text().strip()}
        keyreg(new_env, "keys", "add", "-d", str(dir_c), "--node", c, "--key-id", "svc-new", "--not-after", "+1h",
               "--json")  # fmt: skip
        seq, new_head = head_of(c, sid)  # type: ignore[misc]
        assert seq == 5
        wait_head([a, b, c], sid, 5, new_head, "the new operator's update on every node")
        assert view(a, sid)["headAuthority"] == "operators"  # type: ignore[index]
        assert verdict(b, sid, "svc-new")["status"] == "valid"
    finally:
        node_c.stop()
    for d in (dir_a, Path(node_b["dataDir"]), dir_c):
        assert "Traceback" not in (d / "node.log").read_text(errors="replace"), d
