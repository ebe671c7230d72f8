"""Run API-format prompts in this process with ComfyUI's own executor (comfyui-host.md §6.6).

:class:`Runner` validates a prompt with ``execution.validate_prompt`` and executes it with one long-lived
``execution.PromptExecutor`` (classic cache: a second prompt that shares the checkpoint, the CLIP tower or the
reference re-uses them). :func:`colorize` is what the command line calls: one prompt per sketch, built from
:mod:`headless.workflows`, inputs linked into a temporary ``input/`` folder, results moved to their destination.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import host
from .workflows import Options, build

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class HeadlessError(RuntimeError):
    """A prompt did not validate or failed while running; the message names the node and the reason."""


class Interrupted(HeadlessError):
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

    def image_files(self) -> list[Path]:
        import folder_paths
        files = []
        for node_out in self.outputs.values():
            for img in node_out.get("images", []):
                base = {"output": folder_paths.get_output_directory(), "temp": folder_paths.get_temp_directory(),
                        "input": folder_paths.get_input_directory()}[img.get("type", "output")]
                files.append(Path(base) / img.get("subfolder", "") / img["filename"])
        return files


class Runner:
    """An in-process ComfyUI executor. ``progress``: a callable ``(event, data)`` for executor events, plus
    ``("progress", {"value", "max", "node"})`` for every ComfyUI progress-bar update."""

    def __init__(self, comfyui_dir=None, *, cpu=None, base_directory=None, cache=True):
        host.setup(comfyui_dir, cpu=cpu, base_directory=base_directory)
        import execution

        from ..comfy_compat import executor_cache_args
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
            raise HeadlessError(format_validation_error(prompt, error, node_errors))

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
                    raise HeadlessError(format_execution_error(data))
            raise HeadlessError("the prompt failed without an error message")
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


# ----------------------------------------------------------------------------------------------------------
# The colorize command
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Job:
    sketch: Path
    out: Path


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def is_folder_arg(out) -> bool:
    """`--out` names a folder: it is one, or it was written with a trailing slash (``newdir/``)."""
    text = os.fspath(out)
    return text.endswith(tuple(s for s in (os.sep, os.altsep, "/") if s)) or Path(text).is_dir()


def _key(path: Path) -> str:
    """What makes two paths the same file: the resolved path (links followed), case-folded where the OS does."""
    return os.path.normcase(str(Path(path).expanduser().resolve()))


def _same_file(a: Path, b: Path) -> bool:
    if _key(a) == _key(b):
        return True
    try:
        return os.path.samefile(a, b)      # hard links, case-insensitive file systems
    except OSError:
        return False


def check_destinations(pairs, inputs=(), *, out=None, flag: str = "--out") -> None:
    """Refuse a plan that would overwrite what the user gave or write two results to one file.

    `pairs`: (sketch, destination) per result; `inputs`: (what, path) for every other picture the user gave
    (reference, background, masks), e.g. ``("--reference", Path("r.png"))``. The sketches are inputs too.
    Raises HeadlessError naming the files."""
    protected = [("the sketch", Path(s)) for s, _ in pairs]
    protected += [(f"the {what} picture", Path(p)) for what, p in inputs if p is not None]
    seen: dict[str, Path] = {}
    for sketch, dest in pairs:
        for what, path in protected:
            if _same_file(dest, path):
                if out is not None and _key(out) == _key(dest):
                    itself = " itself" if what == "the sketch" else ""
                    raise HeadlessError(f"{flag} {out} is {what}{itself}; choose another file or folder")
                raise HeadlessError(f"{flag} {dest.parent}: the result {dest} would overwrite {what} {path}; "
                                    f"choose another folder")
        k = _key(dest)
        if k in seen:
            raise HeadlessError(f"the sketches {seen[k]} and {sketch} would both be written to {dest}; rename one "
                                f"of them or colour them into different folders")
        seen[k] = Path(sketch)


def plan_jobs(sketch: Path, out, *, inputs=()) -> list[Job]:
    """One job per sketch: a file gives one (out = file, or out/<stem>.png for a folder: an existing one or a
    name ending in a slash), a folder gives one per picture in it (out must be a folder). `inputs`: (option,
    path) of the other pictures given (reference, background, masks); no result may overwrite one of them or a
    sketch, and no two sketches may give the same result file (see :func:`check_destinations`)."""
    folder = is_folder_arg(out)
    out = Path(out)
    sketch = Path(sketch)
    if sketch.is_dir():
        sketches = list_images(sketch)
        if not sketches:
            raise HeadlessError(f"no pictures ({', '.join(IMAGE_EXTENSIONS)}) in {sketch}")
        if out.exists() and not out.is_dir():
            raise HeadlessError(f"--out {out} is a file; with a folder of sketches it must be a folder")
        jobs = [Job(s, out / f"{s.stem}.png") for s in sketches]
        check_destinations([(j.sketch, j.out) for j in jobs], inputs)
        return jobs
    if not sketch.is_file():
        raise HeadlessError(f"sketch {sketch} does not exist")
    if folder:
        jobs = [Job(sketch, out / f"{sketch.stem}.png")]
        check_destinations([(sketch, jobs[0].out)], inputs)
        return jobs
    if out.suffix.lower() != ".png":
        raise HeadlessError(f"--out {out}: results are PNG files; give a .png name or a folder")
    check_destinations([(sketch, out)], inputs, out=out)
    return [Job(sketch, out)]


_save_ids = itertools.count(100_000)


def _fresh_save_node(prompt: dict) -> dict:
    """Give the SaveImage node an id never used before in this process: the executor keeps node objects per
    id, and SaveImage reads the output folder when it is created, so a re-used one would still write into the
    folder of an earlier call."""
    save_ids = [k for k, v in prompt.items() if v["class_type"] == "SaveImage"]
    if save_ids:
        (old,) = save_ids
        prompt[str(next(_save_ids))] = prompt.pop(old)
    return prompt


def _link_input(src: Path, dest_dir: Path, name: str) -> str:
    src = src.resolve()
    if not src.is_file():
        raise HeadlessError(f"{src} does not exist")
    dest = dest_dir / f"{name}{src.suffix.lower()}"
    try:
        dest.symlink_to(src)
    except OSError:
        shutil.copyfile(src, dest)
    return dest.name


def colorize(runner: Runner, stem: str, options: Options, jobs: list[Job], *, reference: Path,
             background: Path | None = None, sketch_mask: Path | None = None, reference_mask: Path | None = None,
             progress: bool = True, file=None) -> list[Path]:
    """Run workflow `stem` once per job; returns the written files."""
    import folder_paths

    from tqdm import tqdm

    file = file or sys.stderr
    written = []
    with tempfile.TemporaryDirectory(prefix="colorizediffusion-") as tmp:
        tmp = Path(tmp)
        in_dir, out_dir = tmp / "input", tmp / "output"
        in_dir.mkdir()
        out_dir.mkdir()
        saved_dirs = (folder_paths.get_input_directory(), folder_paths.get_output_directory())
        folder_paths.set_input_directory(str(in_dir))
        folder_paths.set_output_directory(str(out_dir))
        try:
            common = {"reference": _link_input(reference, in_dir, "reference")}
            if background is not None:
                common["background"] = _link_input(background, in_dir, "background")
            if sketch_mask is not None:
                common["sketch_mask"] = _link_input(sketch_mask, in_dir, "sketch_mask")
            if reference_mask is not None:
                common["reference_mask"] = _link_input(reference_mask, in_dir, "reference_mask")
            outer = tqdm(total=len(jobs), desc="sketches", unit="img", file=file, disable=not progress,
                         position=0) if len(jobs) > 1 else None
            for i, job in enumerate(jobs):
                # a distinct name per sketch: LoadImage's cache key is the name + content, so the checkpoint,
                # the CLIP tower and the reference are computed once and re-used for every sketch
                name = _link_input(job.sketch, in_dir, f"sketch_{i:05d}")
                opts = options.with_(sketch=name, filename_prefix=f"result_{i:05d}", **common)
                graph = build(stem, opts)
                prompt = _fresh_save_node(graph.to_api())
                sampler_id = str(graph.find("SamplerCustomAdvanced")[0].id)
                titles = {k: v["_meta"]["title"] for k, v in prompt.items()}
                bar = tqdm(total=opts.steps, desc=job.sketch.name[:30], unit="step", file=file,
                           disable=not progress, position=1 if outer else 0, leave=outer is None)

                def listener(event, data, bar=bar):
                    if event == "executing" and data.get("node") is not None:
                        bar.set_postfix_str(titles.get(str(data["node"]), ""), refresh=True)
                    elif event == "progress" and str(data.get("node")) == sampler_id:
                        bar.total = data["max"]
                        bar.n = data["value"]
                        bar.refresh()

                try:
                    result = runner.run(prompt, listener=listener)
                finally:
                    bar.close()
                files = result.image_files()
                if len(files) != 1:
                    raise HeadlessError(f"expected one result picture, got {len(files)}")
                job.out.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(files[0]), job.out)
                written.append(job.out)
                if outer is not None:
                    outer.update(1)
            if outer is not None:
                outer.close()
        finally:
            folder_paths.set_input_directory(saved_dirs[0])
            folder_paths.set_output_directory(saved_dirs[1])
    return written

