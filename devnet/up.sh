#!/bin/sh
# Start a local devnet (anvil + registry + N nodes, default 3) from a source checkout.
set -eu
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -c 'from node.cli import main; main()' devnet up --nodes "${1:-3}"
