# ComfyUI-ColorizeDiffusion developer commands. See README.md.
#   make test   set up (scripts/setup.sh), then the pytest suite on CPU in three host passes (scripts/test.sh)
#   make run    set up and start ComfyUI with this pack on http://127.0.0.1:8188 (scripts/run.sh)
#   make setup  only build/refresh the environment (.venv, .host/ComfyUI); fast when nothing changed
SHELL := /bin/bash
PYTHON := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup test run

setup:
	bash scripts/setup.sh

# scripts/test.sh: the browser's needs (scripts/install_browser.sh), then three passes, always all three: the pinned
# ComfyUI host as it is; the same suite, test servers included, with the host made to behave like current ComfyUI
# with dynamic VRAM (COLORIZEDIFFUSION_HOST=current, tests/host_emulation/; docs/compatibility.md); the same suite
# with dynamic VRAM off (current-static). It prints every summary and fails at the end if any pass failed
# (pytest's exit 5, no tests collected, is a failure too).
test: setup
	bash scripts/test.sh $(PYTEST_ARGS)

run: setup
	bash scripts/run.sh
