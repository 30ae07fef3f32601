"""DAO governance over revocations and the DAO's own membership: deploy a keyreg DAO, propose,
vote (directly or by signed ballot), relay ballots, queue, execute, and index proposals and members
for the node's API.

Layout (one topic per module)::

    errors.py     GovernanceRefused / BallotRejected (rule violations) under the keyreg error tree
    contracts.py  artifacts, DAO deployment, the sync Governance client (web3 lives here and in relay.py)
    ballots.py    the EIP-712 Ballot: signing, the gossip/API wire format, validation, dedup (pure)
    relay.py      BallotRelay: pre-check and submit castVoteBySig, results visible per ballot
    indexer.py    proposals, votes and tallies of the governors subjects named, and their members
    decode.py     defensive decoding of proposal actions, governor and membership-token logs
    recognition.py  which addresses are keyreg DAOs (by runtime code, registry, own token)
    gossip.py     the ballot gossip topic (attached to the node's pubsub when p2p runs)
    service.py    the node service (indexer + relay + gossip) and its status
    scenario.py   run_governance_revocation(): the devnet demo's governance step; membership
                  replacement and governor move scenarios (e2e tests)
"""
