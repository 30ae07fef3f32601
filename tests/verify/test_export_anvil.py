"""The real thing: anchor on anvil, export with eth_getProof, verify offline with the network blocked."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from verify_helpers import T0, Actor, make_actor, service_key

from keyreg.core.builder import controller_set
from keyreg.core.merkle import SparseMerkleTree
from keyreg.core.records import Domain, GovernanceRevocation
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore
from keyreg.verify import StaleView, Verifier, encode_bundle
from keyreg.verify.mpt import NodePool, account_at, storage_at

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


@pytest.fixture
def chain(anvil_process: Any) -> Iterator[tuple[Any, Any, Domain]]:
    from keyreg.chain.deploy import connect, deploy_registry

    snapshot = anvil_process.rpc("evm_snapshot")
    try:
        w3 = connect(anvil_process.url)
        contract = deploy_registry(w3)
        yield w3, contract, Domain(w3.eth.chain_id, bytes.fromhex(contract.address[2:]))
    finally:
        anvil_process.rpc("evm_revert", snapshot)


def _send(w3: Any, contract: Any, name: str, args: list[Any], sender: str | None = None) -> Any:
    tx = getattr(contract.functions, name)(*args).transact({"from": sender or w3.eth.accounts[0], "gas": 3_000_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=10)
    assert receipt["status"] == 1, f"{name} reverted"
    return receipt


def _anchor(w3: Any, contract: Any, actor: Actor, index: int) -> None:
    from keyreg.chain.deploy import call_for

    name, args = call_for(actor.events[index], controller_set(actor.controllers), 1)
    _send(w3, contract, name, args)


def test_mpt_proofs_of_any_storage(chain: tuple[Any, Any, Domain], anvil_process: Any) -> None:
    """eth_getProof of real storage (batchCount, a batch slot, an absent slot) checks out."""
    w3, contract, domain = chain
    _send(w3, contract, "anchorBatch", [b"\x05" * 32, 3])
    block = w3.eth.get_block("latest")
    from keyreg.verify import layout

    slots = [2, layout.batch_slot(b"\x05" * 32), 12345]
    proof = anvil_process.rpc("eth_getProof", contract.address, [f"0x{s:064x}" for s in slots], hex(block["number"]))
    nodes = [bytes.fromhex(n[2:]) for n in proof["accountProof"]]
    nodes += [bytes.fromhex(n[2:]) for sp in proof["storageProof"] for n in sp["proof"]]
    pool = NodePool(nodes)
    account = account_at(pool, bytes(block["stateRoot"]), domain.verifying_contract)
    assert account is not None
    assert account.storage_root == bytes.fromhex(proof["storageHash"][2:])
    values = [storage_at(pool, account.storage_root, s) for s in slots]
    assert values == [int(sp["value"], 16) for sp in proof["storageProof"]]
    assert values[0] == 1
    assert layout.unpack_batch_block(values[1]) == block["number"]
    assert values[2] == 0


def test_export_then_verify_offline(
    chain: tuple[Any, Any, Domain], anvil_process: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    from keyreg.export import RpcProofSource, build_bundle

    w3, contract, domain = chain
    governor = w3.eth.accounts[1]
    now = int(time.time())
    alice = make_actor(
        "int-alice",
        [service_key("k1", label="ia1"), service_key("k2", alg="P-256", label="ia2")],
        governor=bytes.fromhex(governor[2:]),
        domain=domain,
    )
    alice.update(T0 + 100, [service_key("k3", alg="secp256k1", label="ia3")])
    bob = make_actor("int-bob", [service_key("k1", label="ib1")], domain=domain)

    # alice anchored directly (the contract checks the signatures), bob in a batch
    _anchor(w3, contract, alice, 0)
    _anchor(w3, contract, alice, 1)
    tree = SparseMerkleTree()
    tree.set(bob.subject, *bob.head)
    tree.set(alice.subject, *alice.head)
    _send(w3, contract, "anchorBatch", [tree.root, len(tree)])
    # alice's DAO revokes k1
    receipt = _send(w3, contract, "revokeByGovernance", [alice.subject, "k1", T0 + 500, b"\x09" * 32, 77], governor)

    store = MemoryStore()
    registry = Registry(domain, store)
    results = registry.ingest([*alice.events, *bob.events], source="test", admission=False)
    assert all(r.status == "accepted" for r in results)
    registry.add_governance_revocations(
        [
            GovernanceRevocation(
                alice.subject, "k1", T0 + 500, b"\x09" * 32, 77, alice.events[0].event.governor,  # type: ignore[union-attr]
                receipt["blockNumber"], bytes(receipt["transactionHash"]),
            )
        ]
    )  # fmt: skip

    source = RpcProofSource(anvil_process.url)
    request.addfinalizer(source.close)
    bundle = build_bundle(store, source, domain, "latest")
    data = encode_bundle(bundle, compress=True)
    pinned = bundle.checkpoint.hash
    assert pinned == bytes(w3.eth.get_block("latest")["hash"])

    with monkeypatch.context() as m:
        m.setattr(socket, "socket", lambda *a, **k: pytest.fail("socket opened"))
        m.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("socket opened"))
        v = Verifier.from_bundle(data, "0x" + pinned.hex(), max_staleness=3600, now=now)
        a_view, b_view = v.view(alice.subject), v.view(bob.subject)
        assert a_view is not None
        assert b_view is not None
        assert {a.source for a in a_view.anchors} == {"direct", "batch"}
        assert [a.source for a in b_view.anchors] == ["batch"]
        assert v.check(alice.subject, "k1", at=T0 + 499).status == "valid"
        revoked = v.check(alice.subject, "k1", at=T0 + 500)
        assert revoked.status == "revoked"
        assert revoked.revoked is not None
        assert revoked.revoked.by == "governance"
        assert revoked.revoked.proposal_id == 77
        assert v.check(alice.subject, "k3", at=T0 + 200, purpose="sig").status == "valid"
        assert v.check(bob.subject, "k1", at=T0 + 200).status == "valid"
        assert 0 <= v.staleness < 3600

    # bob's next event gets anchored on-chain, but this node never saw it: a hidden head
    nxt = bob.unsigned_update(T0 + 300, [service_key("k2", label="ib2")])
    bob.events.append(nxt)
    _anchor(w3, contract, bob, 0)
    _anchor(w3, contract, bob, 1)
    bundle2 = build_bundle(store, source, domain, "latest")
    v2 = Verifier.from_bundle(encode_bundle(bundle2), bundle2.checkpoint.hash, now=now)
    with pytest.raises(StaleView):
        v2.check(bob.subject, "k1", at=T0 + 200)
    # and an older checkpoint (before the anchor) is still verifiable on its own terms
    v_old = Verifier.from_bundle(data, pinned, now=now)
    assert v_old.check(bob.subject, "k1", at=T0 + 200).ok


def test_cli_export_from_data_dir_then_verify(
    chain: tuple[Any, Any, Domain], anvil_process: Any, tmp_path: Any
) -> None:
    """keyreg export reads a node's SQLite store and config; keyreg verify checks the file offline."""
    import json

    from typer.testing import CliRunner

    import keyreg.cli.verify  # noqa: F401  (registers the commands)
    from keyreg.cli import app
    from keyreg.store.sql import SqlStore

    w3, contract, domain = chain
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    (data_dir / "keyreg.toml").write_text(
        f'[network]\nchain_id = {domain.chain_id}\nregistry = "0x{domain.verifying_contract.hex()}"\n'
    )
    carl = make_actor("int-carl", [service_key("k1", label="ic1")], domain=domain)
    _anchor(w3, contract, carl, 0)
    store = SqlStore(f"sqlite:///{data_dir / 'keyreg.db'}")
    try:
        Registry(domain, store).ingest(carl.events, source="test", admission=False)
    finally:
        store.close()

    out = tmp_path / "keys.bundle"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "export",
            "--data-dir",
            str(data_dir),
            "--rpc",
            anvil_process.url,
            "--all",
            "--out",
            str(out),
            "--gzip",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["subjects"] == 1
    checked = runner.invoke(
        app,
        ["verify", "0x" + carl.subject.hex(), "k1", "--bundle", str(out), "--checkpoint", summary["blockHash"],
         "--at", str(T0 + 10), "--max-staleness", "1h", "--json"],
    )  # fmt: skip
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["verdict"]["status"] == "valid"
    missing = runner.invoke(
        app, ["export", "--data-dir", str(data_dir), "--rpc", anvil_process.url, "--subject", "0x" + "ab" * 32,
              "--out", str(out)],
    )  # fmt: skip
    assert missing.exit_code == 2
    assert "holds no subject" in missing.output
