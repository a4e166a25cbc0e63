#!/usr/bin/env bash
# Installs Debian's `chromium` + `chromium-driver` for the web demo's browser test, when missing and possible.
# Called by `make test` and by `.ci/run` (the one place these commands live).
#
# Without arguments it never fails: where it cannot install (not root, no apt-get, no network) it prints one line
# saying why, and the browser test is then reported as skipped with the reason.
# With --required (CI) an install that cannot happen is an error, with apt-get's own output.
set -uo pipefail

required=0
[ "${1:-}" = "--required" ] && required=1

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi

why=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ "$EUID" != 0 ]; then
    why="not root"
elif ! command -v apt-get >/dev/null; then
    why="no apt-get on this machine"
elif ! apt-get update -qq >"$log" 2>&1; then
    why="apt-get update failed: $(grep -v '^\s*$' "$log" | tail -n 1)"
elif ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver \
        >"$log" 2>&1; then
    why="apt-get install failed: $(grep -v '^\s*$' "$log" | tail -n 1)"
elif ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    # apt-get can succeed without providing the commands (a distribution whose `chromium` is a snap stub).
    why="apt-get installed chromium and chromium-driver but \`chromium\` or \`chromedriver\` is still not on PATH"
fi

if [ -z "$why" ]; then
    exit 0
fi
if [ "$required" = 1 ]; then
    cat "$log" >&2
    echo "install-chromium.sh: could not install chromium and chromium-driver ($why)" >&2
    exit 1
fi
echo "install-chromium.sh: chromium or chromedriver is missing and could not be installed ($why):" \
     "the web demo's browser test will be skipped"
