#!/usr/bin/env bash
# Install Debian's headless-capable `chromium` for the browser tests (tests/test_browser_*.py).
#
# Idempotent: does nothing when /usr/bin/chromium exists. Never fails the caller: if apt-get is
# missing, we are not root, or the install fails, it prints a warning and exits 0, and the browser
# tests then skip with the reason. Override the binary path for the tests with MI_MASSIVE_CHROMIUM.
set -u

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo "chromium present: $CHROMIUM"
    exit 0
fi

warn() {
    echo "WARNING: could not install chromium ($1); the browser tests will be skipped" >&2
    exit 0
}

command -v apt-get >/dev/null 2>&1 || warn "apt-get not found"

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        warn "not root and no passwordless sudo"
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q || warn "apt-get update failed"
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core || warn "apt-get install chromium failed"

if [ -x "$CHROMIUM" ]; then
    echo "installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
else
    warn "$CHROMIUM missing after install"
fi
exit 0
