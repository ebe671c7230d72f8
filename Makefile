# ComfyUI-ColorizeDiffusion developer commands. See README.md.
#   make test   set up (scripts/setup.sh) and run the whole pytest suite against the real ComfyUI host on CPU
#   make run    set up and start ComfyUI with this pack on http://127.0.0.1:8188 (scripts/run.sh)
#   make setup  only build/refresh the environment (.venv, .host/ComfyUI); fast when nothing changed
SHELL := /bin/bash
PYTHON := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup test run

setup:
	bash scripts/setup.sh

# pytest's exit code 5 ("no tests collected") is non-zero, so make fails on it like on any failure.
# The browser test needs Chromium and playwright-core (scripts/install_browser.sh, idempotent).
# Two passes: the pinned ComfyUI host as it is, then the in-process suites with the host made to behave like
# current ComfyUI (COLORIZEDIFFUSION_HOST=current, tests/host_emulation.py; docs/compatibility.md).
test: setup
	bash scripts/install_browser.sh
	$(PYTHON) -m pytest tests -q -ra $(PYTEST_ARGS)
	COLORIZEDIFFUSION_HOST=current $(PYTHON) -m pytest tests -q -ra $(PYTEST_ARGS)

run: setup
	bash scripts/run.sh
