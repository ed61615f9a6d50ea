#!/usr/bin/env bash
# Creates .venv (if missing) and installs guardtrain into it, editable, with the given
# extras (e.g. "dev"). Safe to run again: pip only installs what is missing.
#
# Every package the install uses is pinned by constraints.txt (what `pip freeze` listed
# where the tests last passed), so two installs a month apart get the same versions; the
# floors in pyproject.toml only say what guardtrain can run on. The pins were made on the
# Python named in the file's header: with another Python (where some pinned wheels do not
# exist) they are skipped, with a note. GT_CONSTRAINTS=FILE uses another file;
# GT_CONSTRAINTS=none installs from the floors alone.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"

constraints="${GT_CONSTRAINTS:-constraints.txt}"
pins=()
if [ "$constraints" != none ] && [ -f "$constraints" ]; then
  made_on="$(sed -n 's/^# python \([0-9.]*\).*/\1/p' "$constraints" | head -n 1)"
  here="$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [ -z "$made_on" ] || [ "$made_on" = "$here" ]; then
    pins=(--constraint "$constraints")
  else
    echo "setup-env: $constraints was made on Python $made_on, this is $here:" \
         "installing from the floors in pyproject.toml, unpinned" >&2
  fi
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check ${pins[@]+"${pins[@]}"} -e "$spec"
