#!/usr/bin/env bash
# Every check infr has: lint, types, and all tests (unit, integration with real servers,
# lab with real Debian VMs). The lab is never skipped: if it cannot start, this fails.
set -euo pipefail
cd "$(dirname "$0")"
.ci/install
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check infr tests bench
echo "== mypy"; mypy infr
echo "== test names"  # pytest's default import mode needs every test module's basename unique
dupes=$(find tests -name 'test_*.py' -printf '%f\n' | sort | uniq -d)
if [ -n "$dupes" ]; then echo "check.sh: test modules share a basename: $dupes (rename one)" >&2; exit 1; fi
# -rP: the figures tests print (backup bytes, throughput, reload counts) show in the log.
echo "== pytest"; pytest -q -rP -p no:cacheprovider --durations=25 "$@"
