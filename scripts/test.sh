#!/usr/bin/env bash
# The README's second command: set up (with the test tools), then run the whole suite.
# Extra arguments go to pytest (e.g. -m pure).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh dev
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# --durations: the slowest tests in every run's output, so a slow CI machine shows where
# its time went.
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider --durations=25 "$@"
