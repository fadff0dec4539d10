#!/usr/bin/env bash
# Run the whole test suite (sets up .venv on first use). Extra arguments go to pytest.
set -euo pipefail
. "$(dirname "$0")/setup.sh"
python -m pytest "$@"
