#!/bin/sh
# Install the Debian packages fabship's tests need, when missing.
# Usage: tools/system-deps.sh PACKAGE...
set -eu
missing=""
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "fabship needs these Debian packages, and this machine has no apt-get:$missing" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "fabship needs these Debian packages:$missing" >&2
    echo "install them as root: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086  # word splitting of the package list is wanted
apt-get install -y -q --no-install-recommends $missing >/dev/null
