"""Chain adapter: the registry contract's artifacts, deployment, anchoring and watching (web3 lives here only)."""
