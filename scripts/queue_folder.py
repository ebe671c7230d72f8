#!/usr/bin/env python3
"""Colour a folder of sketches with one reference on a running ComfyUI (HTTP + websocket API).

    python scripts/queue_folder.py --sketches DIR --reference ref.png --out results/ [--mode vanilla]
    python scripts/queue_folder.py --server http://127.0.0.1:8188 --sketches DIR --reference ref.png \\
        --out results/ --workflow my_export.api.json          # any API-format workflow (File > Export (API))

For every picture in DIR: upload it (``POST /upload/image``), queue the workflow (``POST /prompt``), follow the
progress on the websocket (``/ws?clientId=``), then fetch the result (``GET /history/<id>``, ``GET /view``) and
write ``<out>/<sketch name>.png``. The reference (and background) is uploaded once; ComfyUI caches the loaded
checkpoint, the CLIP tower and the encoded reference between the prompts.

The prompt is one of the pack's example workflows built for ``--mode`` (headless/workflows.py, the definition
the shipped files come from) with the options below, or ``--workflow`` (an API-format file: its LoadImage nodes
titled "Sketch", "Reference" and "Background" get the pictures; without titles the first two LoadImage nodes are
the sketch and the reference). Needs only the standard library and aiohttp (a ComfyUI requirement); tqdm is used
for the progress bars when installed. Exit code 0 when every sketch was coloured, 1 otherwise, 2 for bad input.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UPLOAD_SUBFOLDER = "colorizediffusion"


class QueueError(RuntimeError):
    pass


def load_workflows():
    """headless/workflows.py without importing the pack (no ComfyUI needed on this side)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from build_workflows import load_headless

    return load_headless()


def load_runner():
    """headless/runner.py the same way (its planning checks need no ComfyUI)."""
    import importlib
    return importlib.import_module(f"{load_workflows().__package__}.runner")


def given_pictures(args, sketches: list[Path]) -> list[tuple[str, Path]]:
    return [("sketch", s) for s in sketches] + [("--reference", args.reference), ("--background", args.background)]


def check_destinations(pairs, inputs) -> None:
    """headless.runner.check_destinations: no result over a picture the user gave, no two results in one file;
    QueueError otherwise."""
    runner = load_runner()
    try:
        runner.check_destinations(pairs, inputs)
    except runner.HeadlessError as exc:
        raise QueueError(str(exc)) from None


# ----------------------------------------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------------------------------------
def prompt_from_mode(args, sketch: str, reference: str, background: str | None, prefix: str) -> dict:
    wf = load_workflows()
    mode = wf.MODES[args.mode]
    stem = wf.workflow_stem(mode, args.family)
    o = wf.Options(checkpoint=args.checkpoint, clip_vision=args.clip_vision, clip_heads=args.clip_heads,
                   vae=args.vae, sketch=sketch, reference=reference, background=background, width=args.width,
                   height=args.height, size_base=args.size_base, mode=mode, steps=args.steps, seed=args.seed,
                   reference_scale=args.reference_scale, sketch_scale=args.sketch_scale,
                   sampler=args.sampler, scheduler=args.scheduler, filename_prefix=prefix, seed_control="fixed")
    return wf.build(stem, o).to_api()


def prompt_from_file(template: dict, sketch: str, reference: str, background: str | None, prefix: str,
                     seed: int | None) -> dict:
    prompt = json.loads(json.dumps(template))
    loads = sorted((k for k, v in prompt.items() if v.get("class_type") == "LoadImage"), key=_node_key)
    by_title = {prompt[k].get("_meta", {}).get("title", "").strip().lower(): k for k in loads}
    roles = {"sketch": by_title.get("sketch"), "reference": by_title.get("reference"),
             "background": by_title.get("background")}
    if roles["sketch"] is None or roles["reference"] is None:
        if len(loads) < 2:
            raise QueueError("the workflow needs LoadImage nodes titled 'Sketch' and 'Reference' (or two LoadImage "
                             "nodes: the first is the sketch, the second the reference)")
        roles["sketch"], roles["reference"] = loads[0], loads[1]
    prompt[roles["sketch"]]["inputs"]["image"] = sketch
    prompt[roles["reference"]]["inputs"]["image"] = reference
    if background is not None:
        if roles["background"] is None:
            raise QueueError("--background given but the workflow has no LoadImage titled 'Background'")
        prompt[roles["background"]]["inputs"]["image"] = background
    saves = [k for k, v in prompt.items() if v.get("class_type") == "SaveImage"]
    if not saves:
        raise QueueError("the workflow has no SaveImage node: nothing would be written")
    for k in saves:
        prompt[k]["inputs"]["filename_prefix"] = prefix
    if seed is not None:
        for node in prompt.values():
            for name in ("noise_seed", "seed"):
                if name in node.get("inputs", {}) and not isinstance(node["inputs"][name], list):
                    node["inputs"][name] = seed
    return prompt


def _node_key(k: str):
    return (0, int(k)) if k.isdigit() else (1, k)


def format_node_errors(body) -> str:
    if not isinstance(body, dict):
        return str(body)[:2000]
    lines = [f"{body.get('error', {}).get('message', 'invalid prompt')}: {body.get('error', {}).get('details', '')}"]
    for node_id, info in (body.get("node_errors") or {}).items():
        for e in info.get("errors", []):
            name = e.get("extra_info", {}).get("input_name")
            lines.append(f"  node {node_id} ({info.get('class_type')}){' input ' + name if name else ''}: "
                         f"{e.get('details') or e.get('message')}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# HTTP / websocket client
# ----------------------------------------------------------------------------------------------------------
class Client:
    def __init__(self, session, server: str):
        self.s = session
        self.base = server.rstrip("/")
        self.client_id = uuid.uuid4().hex

    @property
    def ws_url(self) -> str:
        scheme = "wss" if self.base.startswith("https") else "ws"
        return f"{scheme}://{self.base.split('://', 1)[1]}/ws?clientId={self.client_id}"

    async def get_json(self, path: str):
        async with self.s.get(self.base + path) as r:
            if r.status != 200:
                raise QueueError(f"GET {path}: HTTP {r.status}: {(await r.text())[:500]}")
            return await r.json()

    async def check_pack(self) -> None:
        async with self.s.get(self.base + "/object_info/ColorizeDiffusionApplySketch") as r:
            info = await r.json() if r.status == 200 else {}
        if "ColorizeDiffusionApplySketch" not in info:
            raise QueueError(f"{self.base} does not have the ColorizeDiffusion nodes (is the pack installed?)")

    async def upload(self, path: Path, name: str) -> str:
        import aiohttp
        form = aiohttp.FormData()
        form.add_field("image", path.read_bytes(), filename=name, content_type="application/octet-stream")
        form.add_field("subfolder", UPLOAD_SUBFOLDER)
        form.add_field("overwrite", "true")
        form.add_field("type", "input")
        async with self.s.post(self.base + "/upload/image", data=form) as r:
            if r.status != 200:
                raise QueueError(f"upload of {path} failed: HTTP {r.status}: {(await r.text())[:300]}")
            info = await r.json()
        return f"{info['subfolder']}/{info['name']}" if info.get("subfolder") else info["name"]

    async def queue(self, prompt: dict) -> str:
        payload = {"prompt": prompt, "client_id": self.client_id}
        async with self.s.post(self.base + "/prompt", json=payload) as r:
            body = await r.json(content_type=None)
            if r.status != 200:
                raise QueueError("the server refused the workflow:\n" + format_node_errors(body))
        return body["prompt_id"]

    async def images(self, prompt_id: str) -> list[bytes]:
        hist = await self.get_json(f"/history/{prompt_id}")
        entry = hist.get(prompt_id, {})
        out = []
        for node_out in entry.get("outputs", {}).values():
            for img in node_out.get("images", []):
                if img.get("type", "output") != "output":
                    continue
                import urllib.parse
                q = urllib.parse.urlencode({"filename": img["filename"], "subfolder": img.get("subfolder", ""),
                                            "type": "output"})
                async with self.s.get(f"{self.base}/view?{q}") as r:
                    if r.status != 200:
                        raise QueueError(f"GET /view {img['filename']}: HTTP {r.status}")
                    out.append(await r.read())
        return out

    async def interrupt(self) -> None:
        async with self.s.post(self.base + "/interrupt", json={}) as r:
            await r.read()


class Progress:
    """tqdm bars when tqdm is installed, one line per event otherwise."""

    def __init__(self, total: int, enabled: bool = True):
        self.enabled = enabled
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        self.tqdm = tqdm if enabled else None
        self.outer = tqdm(total=total, desc="sketches", unit="img", position=0) if self.tqdm else None
        self.inner = None

    def step(self, label: str, value: int, total: int) -> None:
        if self.tqdm is None:
            return
        if self.inner is None or self.inner.desc != label:
            if self.inner is not None:
                self.inner.close()
            self.inner = self.tqdm(total=total, desc=label, unit="step", position=1, leave=False)
        self.inner.total = total
        self.inner.n = value
        self.inner.refresh()

    def done(self, label: str, ok: bool, note: str = "") -> None:
        if self.inner is not None:
            self.inner.close()
            self.inner = None
        if self.outer is not None:
            self.outer.update(1)
            if not ok:
                self.outer.write(f"{label}: {note}", file=sys.stderr)
        elif self.enabled or not ok:          # a failure is always said, progress display or not
            print(f"{label}: {'ok' if ok else note}", file=sys.stderr)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        if self.outer is not None:
            self.outer.close()


async def run(args) -> int:
    import aiohttp

    sketches = load_runner().list_images(args.sketches) if args.sketches.is_dir() else [args.sketches]
    if not sketches:
        raise QueueError(f"no pictures in {args.sketches}")
    if args.out.exists() and not args.out.is_dir():
        raise QueueError(f"--out {args.out} is a file; it must be a folder")
    # refuse before anything is queued: a result over a sketch / the reference, or two sketches to one name
    args.given = given_pictures(args, sketches)
    check_destinations([(sk, args.out / f"{sk.stem}.png") for sk in sketches], args.given[len(sketches):])
    args.out.mkdir(parents=True, exist_ok=True)
    template = json.loads(args.workflow.read_text()) if args.workflow else None
    if template is not None and "nodes" in template:
        raise QueueError(f"{args.workflow} is a UI-format workflow; export it with File > Export (API)")
    if args.seed is None:
        args.seed = random.randint(0, 2**32 - 1)
    print(f"[queue] {len(sketches)} sketch(es) to {args.server}, seed {args.seed}", file=sys.stderr)
    tag = uuid.uuid4().hex[:8]
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = Client(session, args.server)
        await client.check_pack()
        ws = await session.ws_connect(client.ws_url, max_msg_size=0)
        try:
            reference = await client.upload(args.reference, f"{tag}_reference{args.reference.suffix.lower()}")
            background = await client.upload(args.background, f"{tag}_background{args.background.suffix.lower()}") \
                if args.background else None
            pending: dict[str, Path] = {}
            for i, sk in enumerate(sketches):
                name = await client.upload(sk, f"{tag}_{i:05d}_{sk.stem}{sk.suffix.lower()}")
                prefix = f"ColorizeDiffusion/queue_{tag}_{i:05d}"
                prompt = prompt_from_file(template, name, reference, background, prefix, args.seed) if template \
                    else prompt_from_mode(args, name, reference, background, prefix)
                pending[await client.queue(prompt)] = sk
            return await follow(client, ws, pending, args)
        finally:
            await ws.close()


async def follow(client: Client, ws, pending: dict, args) -> int:
    """Read the websocket until every queued prompt is finished. A prompt is finished at its
    ``executing {node: null}`` message, which the server sends after it stored the history (``execution_success``
    comes before that); ``execution_error`` / ``execution_interrupted`` mark it failed."""
    import aiohttp
    progress = Progress(len(pending), enabled=not args.no_progress)
    failed: dict[str, str] = {}
    failures = 0
    written: list[Path] = []
    try:
        while pending:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                continue                                  # preview frames
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                raise QueueError("the server closed the websocket")
            data = json.loads(msg.data)
            kind, body = data.get("type"), data.get("data", {}) or {}
            pid = body.get("prompt_id")
            if pid not in pending:
                continue
            label = pending[pid].name
            if kind == "progress":
                progress.step(label, body.get("value", 0), body.get("max", 1))
            elif kind == "execution_error":
                failed[pid] = (f"{body.get('node_type')} (node {body.get('node_id')}) failed: "
                               f"{body.get('exception_type', '')}: {body.get('exception_message', '').strip()}")
            elif kind == "execution_interrupted":
                failed[pid] = "interrupted"
            elif kind == "executing" and body.get("node") is None:
                sketch = pending.pop(pid)
                if pid in failed:
                    failures += 1
                    progress.done(label, False, failed[pid])
                    continue
                images = await client.images(pid)
                if not images:
                    failures += 1
                    progress.done(label, False, "finished without an image (no SaveImage output in the history)")
                    continue
                dests = [args.out / (f"{sketch.stem}.png" if len(images) == 1 else f"{sketch.stem}_{j}.png")
                         for j in range(len(images))]
                try:    # several pictures per sketch give <stem>_<j>.png: checked again, with what is written
                    check_destinations([(sketch, d) for d in dests],
                                       getattr(args, "given", []) + [("result", w) for w in written])
                except QueueError as exc:
                    failures += 1
                    progress.done(label, False, f"not written: {exc}")
                    continue
                for dest, png in zip(dests, images):
                    dest.write_bytes(png)
                    written.append(dest)
                    print(dest)
                progress.done(label, True)
    finally:
        progress.close()
    return 0 if failures == 0 else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="http://127.0.0.1:8188", help="ComfyUI address (default %(default)s)")
    p.add_argument("--sketches", type=Path, required=True, help="folder of sketches (or one picture)")
    p.add_argument("--reference", type=Path, required=True)
    p.add_argument("--background", type=Path, help="a separate background picture")
    p.add_argument("--out", type=Path, required=True, help="folder for <sketch name>.png")
    p.add_argument("--workflow", type=Path, help="an API-format workflow instead of --mode")
    p.add_argument("--mode", default="vanilla", choices=sorted(load_workflows().MODES))
    p.add_argument("--family", choices=("v1", "v1.5", "v2"), help="checkpoint family (picks the v1.5 background "
                                                                   "workflow; default v2)")
    p.add_argument("--checkpoint", help="file in the server's models/colorizediffusion (default: the official one)")
    p.add_argument("--clip-vision", default="clip_vision_h.safetensors")
    p.add_argument("--clip-heads", type=int, default=0)
    p.add_argument("--vae", help="a separate VAE in models/vae (default: the checkpoint's)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, help="default: random (printed); the same for every sketch")
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--scheduler", default="normal")
    p.add_argument("--reference-scale", type=float, default=4.0)
    p.add_argument("--sketch-scale", type=float, default=1.0)
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--height", type=int, default=0)
    p.add_argument("--size-base", type=int)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    for what in ("sketches", "reference", "background", "workflow"):
        path = getattr(args, what)
        if path is not None and not path.exists():
            print(f"[queue] error: --{what} {path} does not exist", file=sys.stderr)
            return 2
    try:
        return asyncio.run(run(args))
    except QueueError as exc:
        print(f"[queue] error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"[queue] error: cannot reach {args.server}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
