#!/usr/bin/env bash
# Install what tests/test_browser.py needs: headless Chromium, the playwright-core driver and the newest frontend.
#
#   bash scripts/install_browser.sh        # idempotent; about a second when everything is present
#
# - Chromium: `apt-get install chromium` when /usr/bin/chromium is missing (needs root, or sudo without a
#   password; set CHROMIUM=/path/to/chrome to use another binary and skip apt). Nothing else from apt.
# - playwright-core (the driver only: no bundled browsers are downloaded, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1)
#   from the npm registry into .host/node/ (git-ignored), pinned below.
#
# - the static folder of the newest ComfyUI frontend (PyPI comfyui-frontend-package, pinned below) into
#   .host/frontends/<version>/, which the browser test serves with --front-end-root.
#
# scripts/test.sh calls this first; when it fails (no root for apt, no npm), the browser tests are skipped and listed
# as skipped, unless COLORIZEDIFFUSION_REQUIRE_BROWSER=1 (CI), which makes that a failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
NODE_DIR="$REPO/.host/node"
PLAYWRIGHT_SPEC="playwright-core@1.65.1"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

say() { printf '[browser] %s\n' "$*"; }
die() { printf '[browser] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------- Chromium
if [[ -x "$CHROMIUM" ]]; then
    say "chromium: $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown')) ok"
else
    command -v apt-get >/dev/null 2>&1 || die "no $CHROMIUM and no apt-get: install Chromium yourself and set CHROMIUM=/path/to/chrome"
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null \
            || die "installing chromium needs root (apt-get install chromium); run this script as root or with sudo"
        SUDO=(sudo -n)
    fi
    say "chromium: apt-get install chromium"
    export DEBIAN_FRONTEND=noninteractive
    # a stale package list is the usual cause of "no installation candidate": refresh once, then install
    if ! "${SUDO[@]}" apt-get install -y --no-install-recommends chromium; then
        "${SUDO[@]}" apt-get update
        "${SUDO[@]}" apt-get install -y --no-install-recommends chromium
    fi
    [[ -x "$CHROMIUM" ]] || die "apt-get finished but $CHROMIUM does not exist"
    say "chromium: $("$CHROMIUM" --version 2>/dev/null) installed"
fi

# ---------------------------------------------------------------------------------------- playwright-core
command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js >= 18 (Debian: apt-get install nodejs npm)"
command -v node >/dev/null 2>&1 || die "node not found: install Node.js >= 18"
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
(( NODE_MAJOR >= 18 )) || die "Node.js $(node --version) is too old for playwright-core (needs >= 18)"

mkdir -p "$NODE_DIR"
STAMP="$NODE_DIR/.installed"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$PLAYWRIGHT_SPEC" && -f "$NODE_DIR/node_modules/playwright-core/package.json" ]]; then
    say "playwright-core: $PLAYWRIGHT_SPEC in $NODE_DIR ok"
else
    say "playwright-core: npm install $PLAYWRIGHT_SPEC into $NODE_DIR"
    [[ -f "$NODE_DIR/package.json" ]] || printf '{"name": "colorizediffusion-browser-tests", "private": true}\n' >"$NODE_DIR/package.json"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$NODE_DIR" --no-audit --no-fund --save-exact \
        "$PLAYWRIGHT_SPEC"
    printf '%s' "$PLAYWRIGHT_SPEC" >"$STAMP"
fi
# ---------------------------------------------------------------------------------------- newest frontend
# The browser test also runs against the frontend current ComfyUI ships, served by the pinned host with
# --front-end-root: its static folder, taken from the PyPI package, in .host/frontends/<version>/ (git-ignored).
NEWEST_FRONTEND="1.58.1"
FRONTEND_DIR="$REPO/.host/frontends/$NEWEST_FRONTEND"
PY="$REPO/.venv/bin/python"
if [[ -f "$FRONTEND_DIR/index.html" ]]; then
    say "frontend $NEWEST_FRONTEND: $FRONTEND_DIR ok"
else
    [[ -x "$PY" ]] || die "no $PY: run scripts/setup.sh first"
    say "frontend $NEWEST_FRONTEND: pip download comfyui-frontend-package==$NEWEST_FRONTEND"
    TMP="$(mktemp -d "$REPO/.host/.frontend.XXXXXX")"
    trap 'rm -rf "$TMP"' EXIT
    "$PY" -m pip download --disable-pip-version-check --no-deps -q -d "$TMP" "comfyui-frontend-package==$NEWEST_FRONTEND"
    "$PY" - "$TMP"/comfyui_frontend_package-*.whl "$TMP/x" <<'PYEOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [m for m in z.namelist() if m.startswith("comfyui_frontend_package/static/")])
PYEOF
    [[ -f "$TMP/x/comfyui_frontend_package/static/index.html" ]] || die "the frontend package has no static/index.html"
    mkdir -p "$(dirname "$FRONTEND_DIR")"
    rm -rf "$FRONTEND_DIR"
    mv "$TMP/x/comfyui_frontend_package/static" "$FRONTEND_DIR"
    rm -rf "$TMP"; trap - EXIT
    say "frontend $NEWEST_FRONTEND: $FRONTEND_DIR"
fi
say "done (CHROMIUM=$CHROMIUM, playwright-core in $NODE_DIR/node_modules, frontend $NEWEST_FRONTEND)"
