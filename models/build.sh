#!/usr/bin/env bash
# Rebuild models/default: the bundle `lograven demo` uses, trained on the
# generator's normal output (100,000 lines, seed 1) with the default config.
# Run from the repository root with the virtualenv of README's commands:
#   bash models/build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$py" ] || py=python3
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$py" -m lograven.generator --lines 100000 --seed 1 > "$tmp/normal.log"
"$py" -m lograven train --out "$here/default" "$tmp/normal.log"
