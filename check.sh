#!/usr/bin/env bash
# Every check infr has: lint, types, and all tests (unit, integration with real servers,
# lab with real Debian VMs). The lab is never skipped: if it cannot start, this fails.
set -euo pipefail
cd "$(dirname "$0")"
.ci/install
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check infr tests bench
echo "== mypy"; mypy infr
echo "== pytest"; pytest -q -p no:cacheprovider "$@"
