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

say "ComfyUI $(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$COMFYUI_DIR/comfyui_version.py" 2>/dev/null) from $COMFYUI_DIR"
say "open http://$LISTEN:$PORT once it says 'To see the GUI go to'"
exec "$PY" "$COMFYUI_DIR/main.py" --listen "$LISTEN" --port "$PORT" ${device_args[@]+"${device_args[@]}"} "$@"
