"""The headless command (headless/cli.py; docs/usage.md).

    python -m colorize_diffusion colorize ...                  # .venv of this repo (setup.sh's .pth)
    python custom_nodes/ComfyUI-ColorizeDiffusion colorize ... # any Python that runs ComfyUI, from its folder
"""
import sys

if __package__:
    from .headless.cli import main
else:
    # Run as a folder or a file: import this folder as the package `colorize_diffusion`, and keep the folder
    # itself off sys.path (its nodes/ package would shadow ComfyUI's nodes.py).
    import importlib.util
    import os

    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    if "colorize_diffusion" not in sys.modules:
        _spec = importlib.util.spec_from_file_location("colorize_diffusion", os.path.join(_here, "__init__.py"),
                                                       submodule_search_locations=[_here])
        _pkg = importlib.util.module_from_spec(_spec)
        sys.modules["colorize_diffusion"] = _pkg
        _spec.loader.exec_module(_pkg)
    from colorize_diffusion.headless.cli import main

sys.exit(main())
