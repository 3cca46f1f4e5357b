#!/bin/sh
# Install a headless-capable Chromium for tests/test_report.py (the report rendered in a real browser).
#
#   sh scripts/install_browser.sh        # as root, or with sudo available
#
# Idempotent and quiet: when a Chromium is already on PATH it installs nothing and exits 0. Otherwise it installs
# Debian's (or Ubuntu's) chromium package with apt-get, without the recommended extras. Either way it prints where
# the binary is. FER_BENCH_CHROMIUM, when set, names the binary to use (the test reads it too). The test runs this
# script itself only under CI=true or with FER_BENCH_SYSTEM_INSTALL=1; otherwise it skips and says how.
set -eu

find_browser() {
    if [ -n "${FER_BENCH_CHROMIUM:-}" ] && command -v "$FER_BENCH_CHROMIUM" >/dev/null 2>&1; then
        command -v "$FER_BENCH_CHROMIUM"
        return 0
    fi
    for name in chromium chromium-browser google-chrome-stable google-chrome chrome; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

if found="$(find_browser)"; then
    echo "chromium: $found"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: no apt-get here; install Chromium (or Chrome) with this system's package manager" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "install_browser.sh: installing chromium needs root (or sudo)" >&2
    exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        --no-install-recommends chromium; } >"$log" 2>&1; then
    # Ubuntu's package name (a snap transition package on newer releases)
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium-browser \
            >>"$log" 2>&1; then
        echo "install_browser.sh: apt-get could not install chromium; its output:" >&2
        cat "$log" >&2
        exit 1
    fi
fi

if found="$(find_browser)"; then
    echo "chromium: $found"
    exit 0
fi
echo "install_browser.sh: chromium was installed but is not on PATH" >&2
exit 1
