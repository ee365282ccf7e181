#!/usr/bin/env bash
# Headless Chromium for the dashboard's browser test and scripts/screenshots.py.
#
#   scripts/install-browser.sh           chromium + chromium-driver, when missing (CI: make test)
#   scripts/install-browser.sh --fonts   also Noto fonts for Devanagari, CJK, ... (screenshots:
#                                        without them those scripts draw as empty boxes)
#
# Installs Debian's `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver);
# does nothing for what is already there. Never downloads a browser build of its own: Playwright
# drives this system Chromium through `executable_path` (no `playwright install`).
# Needs root (or sudo) for apt-get.
set -euo pipefail

packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
[ -x /usr/bin/chromedriver ] || packages+=(chromium-driver)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || packages+=(fonts-dejavu-core)  # text at all
if [ "${1:-}" = "--fonts" ]; then
    dpkg -s fonts-noto-core >/dev/null 2>&1 || packages+=(fonts-noto-core)
    dpkg -s fonts-noto-cjk >/dev/null 2>&1 || packages+=(fonts-noto-cjk)
fi

if [ ${#packages[@]} -eq 0 ]; then
    echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null) already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-browser: need root (or sudo) to apt-get install ${packages[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
echo "install-browser: installed ${packages[*]}; $(/usr/bin/chromium --version 2>/dev/null)"
