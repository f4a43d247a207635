#!/usr/bin/env bash
# Builds the virtual environments of the official backend.ai-client that tests/compat runs:
#   .compat/v23  backend.ai-client 23.9.10 on Python 3.11
#   .compat/v26  backend.ai-client 26.9.6  on Python 3.13
# A venv that is already complete is left alone.  A missing interpreter is reported, not fatal:
# the compat tests then skip that client (and fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .compat

source scripts/find-python.sh

build() {
    local name=$1 python_version=$2; shift 2
    local dir=.compat/$name
    # The stamp records what was installed; a changed list installs the difference.
    if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$*" ]; then
        return 0
    fi
    local python
    if ! python=$(find_python "$python_version"); then
        echo "setup-compat: no Python $python_version here; skipping $name" >&2
        return 0
    fi
    [ -x "$dir/bin/python" ] || "$python" -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" 2>&1 \
        | grep -v "^WARNING: Location" || true
    echo "$*" > "$dir/.complete"
    echo "setup-compat: built $dir with $*"
}

# 23.9.10 predates yarl 1.10, whose URL internals it reads; newer yarl breaks its signing.
# The examples page's scripts also use requests, which the client does not bring.
build v23 3.11 'backend.ai-client==23.9.10' 'yarl==1.9.4' requests
build v26 3.13 'backend.ai-client==26.9.6' requests
