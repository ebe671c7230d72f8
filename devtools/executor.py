"""ComfyUI's own executor in the calling process, for the tests and the benchmark (comfyui-host.md §6.6).

The caller has ComfyUI importable (tests/conftest.py, bench/env.py). :func:`load_nodes` registers the core extra
nodes and the pack's nodes as ComfyUI's start-up does; :class:`Runner` validates a prompt with
``execution.validate_prompt`` and executes it with one long-lived ``execution.PromptExecutor`` (classic cache, as a
server runs its queue).
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..comfy_compat import executor_cache_args


def load_nodes() -> None:
    """The core extra nodes (comfy_extras) and the pack's nodes in ComfyUI's registry, once."""
    import nodes

    if "SamplerCustomAdvanced" not in nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    from ..nodes import display_names, node_classes   # the pack's registration, once ComfyUI's own nodes are in

    for name, cls in node_classes().items():          # what ComfyUI's loader does with comfy_entrypoint
        nodes.NODE_CLASS_MAPPINGS.setdefault(name, cls)
    for name, title in display_names().items():
        nodes.NODE_DISPLAY_NAME_MAPPINGS.setdefault(name, title)


class PromptFailed(RuntimeError):
    """A prompt did not validate or failed while running; the message names the node and the reason."""


class Interrupted(PromptFailed):
    pass


class _ServerStub:
    """What PromptExecutor and the progress handlers touch on ComfyUI's PromptServer."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.listeners = []

    def send_sync(self, event, data, sid=None):
        if event == "executing" and isinstance(data, dict):
            self.last_node_id = data.get("node")
        for fn in list(self.listeners):
            fn(event, data)

    def queue_updated(self):
        pass


@dataclass
class RunResult:
    prompt_id: str
    outputs: dict                      # node id -> ui output ({"images": [{"filename", "subfolder", "type"}]})
    messages: list = field(default_factory=list)

    def image_files(self, kinds: tuple = ("output", "temp", "input")) -> list[Path]:
        """The pictures the prompt's output nodes gave, of the folder `kinds` (Save Image: output, Preview: temp)."""
        import folder_paths
        files = []
        for node_out in self.outputs.values():
            for img in node_out.get("images", []):
                if img.get("type", "output") not in kinds:
                    continue
                base = {"output": folder_paths.get_output_directory(), "temp": folder_paths.get_temp_directory(),
                        "input": folder_paths.get_input_directory()}[img.get("type", "output")]
                files.append(Path(base) / img.get("subfolder", "") / img["filename"])
        return files


class Runner:
    """An in-process ComfyUI executor. ``progress``: a callable ``(event, data)`` for executor events, plus
    ``("progress", {"value", "max", "node"})`` for every ComfyUI progress-bar update."""

    def __init__(self, *, cache=True):
        load_nodes()
        import execution

        self.server = _ServerStub()
        cache_type = execution.CacheType.CLASSIC if cache else execution.CacheType.NONE
        self.executor = execution.PromptExecutor(self.server, cache_type=cache_type,
                                                 cache_args=executor_cache_args())

    def run(self, prompt: dict, *, listener=None, prompt_id: str | None = None) -> RunResult:
        import comfy.model_management as mm
        import comfy.utils
        import execution

        pid = prompt_id or str(uuid.uuid4())
        ok, error, outputs, node_errors = asyncio.run(execution.validate_prompt(pid, prompt, None))
        if not ok:
            raise PromptFailed(format_validation_error(prompt, error, node_errors))

        def hook(value, total, preview, prompt_id=None, node_id=None):
            mm.throw_exception_if_processing_interrupted()
            if listener is not None:
                listener("progress", {"value": value, "max": total, "node": node_id or self.server.last_node_id,
                                      "prompt_id": pid})

        messages = []

        def record(event, data):
            messages.append((event, data))
            if listener is not None:
                listener(event, data)

        self.server.listeners.append(record)
        saved_hook, saved_enabled = comfy.utils.PROGRESS_BAR_HOOK, comfy.utils.PROGRESS_BAR_ENABLED
        comfy.utils.set_progress_bar_global_hook(hook)
        comfy.utils.PROGRESS_BAR_ENABLED = False       # no second (tqdm) bar from the samplers
        try:
            self.server.last_prompt_id = pid
            self.executor.execute(prompt, pid, extra_data={"client_id": "headless"}, execute_outputs=outputs)
        finally:
            comfy.utils.set_progress_bar_global_hook(saved_hook)
            comfy.utils.PROGRESS_BAR_ENABLED = saved_enabled
            self.server.listeners.remove(record)
        if not self.executor.success:
            for event, data in messages:
                if event == "execution_interrupted":
                    raise Interrupted(f"interrupted in {data.get('node_type')} (node {data.get('node_id')})")
                if event == "execution_error":
                    raise PromptFailed(format_execution_error(data))
            raise PromptFailed("the prompt failed without an error message")
        return RunResult(pid, dict(self.executor.history_result.get("outputs", {})), messages)


def format_validation_error(prompt: dict, error, node_errors: dict) -> str:
    lines = []
    if isinstance(error, dict):
        lines.append(f"{error.get('message', 'invalid prompt')}: {error.get('details', '')}".rstrip(": "))
    for node_id, info in (node_errors or {}).items():
        title = prompt.get(node_id, {}).get("_meta", {}).get("title") or info.get("class_type", "")
        for e in info.get("errors", []):
            extra = e.get("extra_info", {})
            name = extra.get("input_name")
            detail = e.get("details") or e.get("message")
            lines.append(f"  node {node_id} ({title}){' input ' + name if name else ''}: {detail}")
    return "the workflow does not validate:\n" + "\n".join(lines)


def format_execution_error(data: dict) -> str:
    return (f"{data.get('node_type')} (node {data.get('node_id')}) failed: "
            f"{data.get('exception_type', '').rsplit('.', 1)[-1]}: {data.get('exception_message', '').strip()}")
