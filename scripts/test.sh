#!/usr/bin/env bash
# Run the linter and then the test suite (sets up .venv on first use). Extra arguments go to pytest,
# e.g. ./scripts/test.sh -m "not slow" for the quick loop.
set -euo pipefail
. "$(dirname "$0")/setup.sh"
ruff check src tests benchmarks scripts
python -m pytest "$@"
