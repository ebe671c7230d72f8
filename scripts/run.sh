#!/usr/bin/env bash
# Start ComfyUI (the tree scripts/setup.sh prepared, or COMFYUI_DIR) with this pack and the real frontend.
#
#   bash scripts/run.sh                        # http://127.0.0.1:8188
#   COLORIZEDIFFUSION_PORT=8190 bash scripts/run.sh
#   bash scripts/run.sh --base-directory /data/comfy   # any further arguments go to ComfyUI's main.py
#
# Environment: COLORIZEDIFFUSION_LISTEN (default 127.0.0.1), COLORIZEDIFFUSION_PORT (default 8188),
# COMFYUI_DIR (default .host/ComfyUI). `--cpu` is added when torch sees no CUDA device.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PY="$REPO/.venv/bin/python"
COMFYUI_DIR="${COMFYUI_DIR:-$REPO/.host/ComfyUI}"
LISTEN="${COLORIZEDIFFUSION_LISTEN:-127.0.0.1}"
PORT="${COLORIZEDIFFUSION_PORT:-8188}"

say() { printf '[run] %s\n' "$*"; }
[[ -x "$PY" ]] || { say "no virtual environment at $REPO/.venv: run 'make setup' (scripts/setup.sh) first" >&2; exit 1; }
[[ -f "$COMFYUI_DIR/main.py" ]] || { say "no ComfyUI at $COMFYUI_DIR: run 'make setup' first or set COMFYUI_DIR" >&2; exit 1; }

device_args=()
case " $* " in
    *" --cpu "*) ;;
    *)
        if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
            say "torch sees no CUDA device: running ComfyUI with --cpu"
            device_args=(--cpu)
        fi
        ;;
esac

# What ComfyUI will use: the last --listen / --port / --base-directory of the arguments wins over the settings
listen="$LISTEN" port="$PORT" base="" database=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    a="${args[i]}" next="${args[i+1]-}"
    case "$a" in
        --port=*) port="${a#--port=}" ;;
        --port) port="$next" ;;
        --listen=*) listen="${a#--listen=}" ;;
        --listen) if [[ -z "$next" || "$next" == --* ]]; then listen="0.0.0.0"; else listen="$next"; fi ;;
        --base-directory=*) base="${a#--base-directory=}" ;;
        --base-directory) base="$next" ;;
        --database-url|--database-url=*) database="given" ;;
    esac
done

# A --base-directory is a whole ComfyUI user tree: ComfyUI stops without its custom_nodes/, and its database would
# stay in the ComfyUI folder's user/ (which a tree that never ran without --base-directory lacks: "Failed to
# initialize database"); it goes to the base directory's user/ instead, unless --database-url says otherwise. The
# pack is linked into its custom_nodes/ like into .host/ComfyUI.
extra_args=()
if [[ -n "$base" ]]; then
    mkdir -p "$base/custom_nodes" "$base/user" "$base/models/colorizediffusion" "$base/models/clip_vision"
    [[ -e "$base/custom_nodes/ComfyUI-ColorizeDiffusion" ]] || ln -s "$REPO" "$base/custom_nodes/ComfyUI-ColorizeDiffusion"
    [[ -n "$database" ]] || extra_args=(--database-url "sqlite:///$(cd "$base" && pwd -P)/user/comfyui.db")
    say "base directory $base (models/, input/, output/, user/, custom_nodes/ there)"
fi

# the address a browser opens: a wildcard address listens everywhere, this machine reaches it on loopback
host="${listen%%,*}"
case "$host" in
    0.0.0.0|::|"") host="127.0.0.1"; say "listening on all interfaces ($listen)" ;;
esac
[[ "$host" == *:* ]] && host="[$host]"
say "ComfyUI $(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$COMFYUI_DIR/comfyui_version.py" 2>/dev/null) from $COMFYUI_DIR"
say "open http://$host:$port once it says 'To see the GUI go to'"
exec "$PY" "$COMFYUI_DIR/main.py" --listen "$LISTEN" --port "$PORT" ${device_args[@]+"${device_args[@]}"} \
    ${extra_args[@]+"${extra_args[@]}"} "$@"
