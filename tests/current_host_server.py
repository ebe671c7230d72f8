"""ComfyUI's own main.py under the current-host emulation (tests/host_emulation/): what the test servers run in the
current-host passes (COLORIZEDIFFUSION_HOST=current or current-static: dynamic VRAM on or off), so that the served
tests (example workflows over HTTP, the browser, the client) see current ComfyUI's behaviour too.

    python tests/current_host_server.py <main.py arguments>

main.py runs unchanged, as ``__main__``; the emulation starts when main.py has imported ComfyUI's ``nodes`` module
and before it loads any custom node (``nodes.init_extra_nodes``), so that torch is still first imported where
main.py imports it, and every model the pack builds is built under the emulation. The executor piece is left out:
the pinned main.py builds its own executor, with the cache arguments of its own version.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import os
import runpy
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
STARTED = "[current host] emulation on (tests/host_emulation/), before the custom nodes load"
COMFYUI_DIR = Path(os.environ.get("COMFYUI_DIR") or TESTS.parent / ".host" / "ComfyUI").resolve()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls `then(module)` right after the module `name` has been executed (once)."""

    def __init__(self, name: str, then):
        self.name, self.then = name, then

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then(module):
            exec_module(module)
            self.then(module)

        spec.loader.exec_module = exec_then
        return spec


def _emulate_before_extra_nodes(nodes_module) -> None:
    import host_emulation

    init_extra_nodes = nodes_module.init_extra_nodes
    stack = contextlib.ExitStack()     # held for the life of the server process

    @functools.wraps(init_extra_nodes)
    async def emulated_init_extra_nodes(*args, **kwargs):
        stack.enter_context(host_emulation.emulate(executor=False, dynamic_vram=host_emulation.session_dynamic_vram()))
        print(STARTED, file=sys.stderr, flush=True)
        return await init_extra_nodes(*args, **kwargs)

    nodes_module.init_extra_nodes = emulated_init_extra_nodes


def main() -> None:
    main_py = COMFYUI_DIR / "main.py"
    sys.path[0:0] = [str(COMFYUI_DIR), str(TESTS)]
    sys.argv = [str(main_py), *sys.argv[1:]]
    sys.meta_path.insert(0, _AfterImport("nodes", _emulate_before_extra_nodes))
    runpy.run_path(str(main_py), run_name="__main__")


if __name__ == "__main__":
    main()
