"""Issue 13 review M9: the governance indexer's RPC work per poll is bounded.

At 43df08f every poll re-read 3-4 eth_calls (state, proposalVotes, clock, quorum) for every
proposal not final, forever (also for proposals left Succeeded, or final with no quorum): up to
~20,000 calls per poll at gov.max_proposals, against an RPC quota the chain watcher shares. Now a
proposal is refreshed when one of its events arrives, when the head passes its vote start or end,
or at the slow cadence refresh_every_s; never again once seen final; at most
max_refreshes_per_poll per poll. Counted on a real anvil behind a counting proxy.
"""

from __future__ import annotations

import pytest
from counting_proxy import CountingProxy
from gov_fixture import MEMBERS, VOTING_DELAY, VOTING_PERIOD, GovChain

from keyreg.gov.contracts import Governance
from keyreg.gov.indexer import GovernanceIndexer, IndexerLimits
from keyreg.gov.recognition import Recogniser
from keyreg.gov.tx import connect
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

PROPOSALS = 6
CAP = 4


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_polls_refresh_only_what_changed_within_a_budget(gov_chain: GovChain) -> None:
    proxy = CountingProxy(gov_chain.anvil.url)
    try:
        gov = Governance(gov_chain.w3, gov_chain.dao.governor)
        subject, signed = gov_chain.subject(gov_chain.dao.governor, "svc-b")
        pids = [gov.propose_revocation(MEMBERS[0], subject, "svc-b", 100 + i, f"p{i}")[0] for i in range(PROPOSALS)]
        registry = Registry(gov_chain.domain, MemoryStore())
        registry.ingest([signed])
        w3 = connect(proxy.url, 10.0)
        clock = Clock()
        limits = IndexerLimits(max_refreshes_per_poll=CAP, refresh_every_s=300.0)
        indexer = GovernanceIndexer(w3, registry, Recogniser(w3, gov_chain.registry.address), limits=limits,
                                    clock=clock)  # fmt: skip

        def calls_of_one_poll() -> int:
            before = proxy.count("eth_call")
            indexer.poll()
            return proxy.count("eth_call") - before

        indexer.poll()  # recognition, logs, and the first CAP proposals' views
        assert indexer.status()["refreshes"] == CAP
        assert indexer.status()["refreshesDeferred"] == PROPOSALS - CAP
        assert calls_of_one_poll() <= (PROPOSALS - CAP) * 3  # the rest, next poll
        assert all(indexer.get(pid)["state"] in ("Pending", "Active") for pid in pids)

        # Nothing happened: polls cost no eth_call (43df08f: 3-4 per open proposal, every poll).
        assert calls_of_one_poll() == 0
        assert calls_of_one_poll() == 0

        # The head passes every vote start: each proposal is read again once (CAP per poll).
        gov_chain.mine(VOTING_DELAY + 1)
        spent = calls_of_one_poll() + calls_of_one_poll()
        assert spent <= PROPOSALS * 3
        assert calls_of_one_poll() == 0
        assert all(indexer.get(pid)["state"] == "Active" for pid in pids)
        assert all(indexer.get(pid)["quorum"] is not None for pid in pids)

        # A vote is an event of one proposal: only that one is read again (state + tallies).
        gov.cast_vote(MEMBERS[1], pids[0], 1)
        assert calls_of_one_poll() == 2
        assert indexer.get(pids[0])["votes"]["for"] == 1

        # The slow cadence: after refresh_every_s, the open ones are read again, CAP per poll.
        clock.now += 301
        assert 0 < calls_of_one_poll() <= CAP * 2
        assert calls_of_one_poll() <= (PROPOSALS - CAP) * 2
        assert calls_of_one_poll() == 0

        # The vote ends: each is read once more, seen final (Defeated: one vote short of quorum,
        # or Succeeded), and a final proposal is never read again.
        gov_chain.mine(VOTING_PERIOD + 1)
        calls_of_one_poll()
        calls_of_one_poll()
        states = {indexer.get(pid)["state"] for pid in pids}
        assert states <= {"Defeated", "Succeeded"}
        clock.now += 10_000
        for _ in range(3):
            calls_of_one_poll()
        defeated = [pid for pid in pids if indexer.get(pid)["state"] == "Defeated"]
        assert defeated
        clock.now += 10_000
        # Only Succeeded ones (waiting for a queue/execute event) are still re-read, slowly.
        assert calls_of_one_poll() <= 2 * (len(pids) - len(defeated))
        indexer.close()
    finally:
        proxy.close()
