"""Headless colorization: the example workflows run in-process on the embedded ComfyUI host.

    python -m colorize_diffusion colorize --sketch S --reference R --mode vanilla --out result.png

Modules: ``workflows`` (the one definition of the example workflows; pure Python), ``host`` (puts ComfyUI on
``sys.path`` and initialises it), ``runner`` (validates and executes prompts with ``execution.PromptExecutor``),
``weights`` (missing-file checks with download hints), ``cli`` (the command line), ``thumbnails`` (the
``example_workflows/*.jpg`` diagrams). Nothing here imports ComfyUI at import time.
"""
