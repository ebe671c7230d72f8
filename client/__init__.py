"""A client of ComfyUI's HTTP API for the ColorizeDiffusion example workflows (standard library only).

It never imports ComfyUI or the pack: it reads the shipped example workflows (`example_workflows/*.json`), turns
them into API prompts with the server's own `/object_info`, uploads the pictures, queues the prompts on one or
several servers, follows them on the websocket and downloads the results. `python -m client colorize --help`.
"""
