#!/usr/bin/env bash
# Run the whole test suite in its three passes, always all three, and fail at the end if any failed.
#
#   bash scripts/test.sh [pytest arguments]      # what `make test` runs after scripts/setup.sh
#
# Pass 1, "pinned host": ComfyUI 0.3.75 as scripts/setup.sh installed it.
# Pass 2, "current host": the same suite with the host made to behave like current ComfyUI with dynamic VRAM
#   (COLORIZEDIFFUSION_HOST=current, tests/host_emulation/), the test servers included.
# Pass 3, "current-static host": the same suite again on current ComfyUI with dynamic VRAM off
#   (COLORIZEDIFFUSION_HOST=current-static: --disable-dynamic-vram, or a machine without an NVIDIA card), the test
#   servers included. Each pass takes about as long as the pinned one (~7 min on a free machine).
# tests/test_gpu_check.py (the GPU check's dry run) starts both current-host modes itself: it runs in pass 1 and is
# skipped in passes 2 and 3.
#
# The browser tests need Chromium and playwright-core (scripts/install_browser.sh, which needs root or sudo for
# apt, and npm). Without them those tests are skipped and listed as skipped in the summary, unless
# COLORIZEDIFFUSION_REQUIRE_BROWSER=1 (CI), which makes a missing browser a failure.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PY="$REPO/.venv/bin/python"
LOGS="$REPO/.host/test-logs"
mkdir -p "$LOGS"
cd "$REPO"

say() { printf '[test] %s\n' "$*"; }

if ! bash scripts/install_browser.sh; then
    if [[ "${COLORIZEDIFFUSION_REQUIRE_BROWSER:-}" == 1 ]]; then
        say "the browser is required (COLORIZEDIFFUSION_REQUIRE_BROWSER=1) and could not be installed"
        exit 1
    fi
    say "no browser: the browser tests will be skipped. To run them, install Chromium and set CHROMIUM=/path/to/chrome,"
    say "and Node.js >= 18 with npm (playwright-core is installed into .host/node by scripts/install_browser.sh)"
fi

run_pass() {   # name, COLORIZEDIFFUSION_HOST, pytest arguments
    local name="$1" host="$2" log="$LOGS/$1.log"
    say "=== pass: $name host ==="
    COLORIZEDIFFUSION_HOST="$host" "$PY" -m pytest -q -ra "${@:3}" 2>&1 | tee "$log"
    printf -v "RC_$name" %s "${PIPESTATUS[0]}"
    # pytest's closing line, e.g. "492 passed, 3 skipped in 612.30s (0:10:12)"
    printf -v "SUMMARY_$name" %s "$(grep -E '^(=+ )?[0-9]+ (passed|failed|error|skipped)|no tests ran' "$log" | tail -n 1 | sed 's/^=* //; s/ =*$//')"
}

T0=$SECONDS
run_pass pinned "" tests "$@"
run_pass current current tests "$@"
run_pass current_static current-static tests "$@"

say "=== summary ($(( (SECONDS - T0) / 60 )) min $(( (SECONDS - T0) % 60 )) s; logs in $LOGS) ==="
status=0
count() { grep -oE "[0-9]+ ($1)" <<<"$2" | awk '{n += $1} END {print n + 0}'; }
total_passed=0; total_failed=0; total_skipped=0
for name in pinned current current_static; do
    rc_var="RC_$name" summary_var="SUMMARY_$name"
    s="${!summary_var}"
    say "$name host: ${s:-no summary (pytest exit ${!rc_var})}"
    [[ "${!rc_var}" == 0 ]] || status=1
    total_passed=$(( total_passed + $(count passed "$s") ))
    total_failed=$(( total_failed + $(count 'failed|errors?' "$s") ))
    total_skipped=$(( total_skipped + $(count skipped "$s") ))
done
(( status == 0 || total_failed > 0 )) || total_failed=1   # a pass that failed without a count (exit 3, 4, 5) fails
echo "total: $total_passed passed, $total_failed failed, $total_skipped skipped"
exit $status
