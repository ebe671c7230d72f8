"""Developer tooling, never imported by the pack at run time (ComfyUI imports only the root `__init__` and `nodes/`).

``workflows`` (the one definition of the example workflows, pure Python; ``scripts/build_workflows.py`` writes
them) on ``graph`` (the graph and its API and UI forms) and ``model_files`` (every file a workflow needs, its
download and folder), ``advanced_workflows`` (the graphs that show every node), ``thumbnails`` (the
``example_workflows/*.jpg`` diagrams), ``executor`` (ComfyUI's own executor in the calling process, for the tests
and the benchmark). Users run workflows in ComfyUI or through the HTTP client (``client/``).
"""
