#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the browser tests (pytest -m browser), which
# drive it through playwright with executable_path: never `playwright install`, no download.
#
#   path="$(bash .ci/ensure_chromium.sh)"   # `make test` exports it as MOMENTS_CHROMIUM
#
# Looks for $MOMENTS_CHROMIUM, then `chromium` on PATH, then /usr/bin/chromium. When none is
# there it runs `apt-get update && apt-get install -y --no-install-recommends chromium` (as
# root, or through sudo when not root and sudo exists). What it did goes to stderr; the one
# line on stdout is the binary's path. Exits 1, saying why, when Chromium cannot be installed.
set -euo pipefail

say() { printf 'ensure_chromium: %s\n' "$*" >&2; }

find_chromium() {
    local candidate
    for candidate in "${MOMENTS_CHROMIUM:-}" "$(command -v chromium 2>/dev/null || true)" /usr/bin/chromium; do
        if [[ -n "$candidate" && -x "$candidate" && ! -d "$candidate" ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

report() {
    local path="$1" version
    version="$("$path" --version 2>/dev/null | head -n 1 || true)"
    say "$2 $path${version:+ ($version)}"
    printf '%s\n' "$path"
}

if [[ -n "${MOMENTS_CHROMIUM:-}" && ! ( -x "$MOMENTS_CHROMIUM" && ! -d "$MOMENTS_CHROMIUM" ) ]]; then
    say "MOMENTS_CHROMIUM=$MOMENTS_CHROMIUM is not an executable; looking for Debian's chromium instead"
fi

if path="$(find_chromium)"; then
    report "$path" "Chromium already present:"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    say "Chromium is missing and apt-get is not available: install Chromium yourself and set MOMENTS_CHROMIUM to its path"
    exit 1
fi

if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo --non-interactive)
else
    say "Chromium is missing and installing it needs root: run as root, install sudo, or run" \
        "'apt-get install chromium' as root (or set MOMENTS_CHROMIUM to a Chromium binary)"
    exit 1
fi

say "Chromium not found; installing Debian's chromium: ${as_root[*]:+${as_root[*]} }apt-get update && apt-get install -y --no-install-recommends chromium"
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get update >&2 \
    || ! "${as_root[@]}" apt-get install -y --no-install-recommends chromium >&2; then
    say "could not install chromium with apt-get (see the output above); the browser tests need it"
    exit 1
fi

if ! path="$(find_chromium)"; then
    say "apt-get installed chromium but no chromium binary is on PATH or at /usr/bin/chromium"
    exit 1
fi
report "$path" "installed Chromium:"
