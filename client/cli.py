"""`python -m client colorize`: one sketch or a folder, on the embedded ComfyUI or on one or several servers."""
from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse
from pathlib import Path

from . import pictures as pics
from . import results
from .jobs import Job, Scheduler
from .server import ComfyServer, Rejected, ServerDown
from .workflow import MODES, WorkflowError, load_ui, pictures as picture_nodes, takes_pool, to_api

EXIT_FAILED, EXIT_USAGE = 1, 2
MODEL_WIDGETS = {"checkpoint": ("ColorizeDiffusionCheckpointLoader", "ckpt_name"),
                 "clip_vision": ("ColorizeDiffusionLoadOpenCLIPVision", "clip_name"),
                 "tagger": ("ColorizeDiffusionLoadWDTagger", "tagger_name"), "vae": ("VAELoader", "vae_name")}
FOLDERS = {"checkpoint": "models/colorizediffusion", "clip_vision": "models/clip_vision",
           "tagger": "models/colorizediffusion/tagger", "vae": "models/vae"}


class UsageError(Exception):
    pass


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m client", description="Colorize sketches through ComfyUI's HTTP API "
                                 "with the ColorizeDiffusion example workflows.")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("colorize", help="one sketch or a folder of sketches", description=(
        "Colorize a sketch, or every picture of a folder, like a reference. Without --server the embedded ComfyUI "
        "(scripts/run.sh) is started for the run; --server repeated spreads the sketches over several servers. "
        "Each result records the settings and the sketch that made it: re-running the same command skips the "
        "sketches done with these settings; results made with other settings (another seed, strength, model, "
        "workflow, reference) or from another drawing of the same name stop the run before any job, with one line "
        "naming the difference: pass --overwrite to replace them, or another --out to keep them. Exit codes: 0 all "
        "done, 1 some sketch failed (listed with its reason), 2 bad arguments (nothing queued, nothing written), "
        "130 interrupted."))
    c.add_argument("--sketch", required=True, type=Path, help="a line drawing, or a folder of them")
    refs = c.add_mutually_exclusive_group(required=True)
    refs.add_argument("--reference", type=Path, help="the colour reference")
    refs.add_argument("--pool", type=Path, help="a folder of colour references: each page gets the references "
                      "retrieved for it from the pool (ColorFlow's retrieval; mode chapter by default)")
    c.add_argument("--background", type=Path, help="a background picture (modes with one)")
    c.add_argument("--out", required=True, type=Path, help="output folder, made when the first result is written "
                   "(a file there, or a path that cannot be a folder, is refused before any job); results are "
                   "<sketch name>_colorized.png")
    c.add_argument("--mode", help=f"{', '.join(MODES)} (default: vanilla, with --pool chapter; colorflow, "
                   "colorflow-shading and colorflow-grey take --pool too); or --workflow")
    c.add_argument("--workflow", help="a workflow .json saved from ComfyUI instead of a mode")
    c.add_argument("--server", action="append", default=[], metavar="URL",
                   help="a running ComfyUI with the pack (repeat for several); none: the embedded one")
    for name in MODEL_WIDGETS:
        c.add_argument(f"--{name.replace('_', '-')}", help=f"file in {FOLDERS[name]} (default: the workflow's)")
    c.add_argument("--clip-heads", type=int, help="attention heads of a CLIP tower of unknown size")
    c.add_argument("--seed", type=int, help="noise seed (default: the one saved in the workflow)")
    c.add_argument("--steps", type=int)
    c.add_argument("--width", type=int, help="generation width (multiple of 32)")
    c.add_argument("--height", type=int)
    c.add_argument("--reference-scale", type=float)
    c.add_argument("--sketch-scale", type=float)
    c.add_argument("--overwrite", action="store_true", help="redo every sketch and replace its result, whatever "
                   "made it (without it: done ones are skipped, ones made otherwise stop the run)")
    c.add_argument("--verbose", action="store_true", help="progress per step; the server's traceback on errors")
    c.add_argument("--comfy-args", nargs=argparse.REMAINDER, default=[],
                   help="further arguments for the embedded ComfyUI (e.g. --base-directory DIR)")
    return ap


def check_out(out: Path) -> None:
    """--out must be a folder the client can write, or one it can create there; checked before any job."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder: name a folder (it is created if missing)")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {out}: {existing} is a file, so the folder cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {existing} is not writable" if existing == out else
                         f"--out {out}: cannot create it in {existing} (not writable)")


def plan(args) -> list:
    """Jobs for the sketches; refuses an unusable --out and outputs that would overwrite an input or each
    other."""
    check_out(args.out)
    sketches = pics.sketches_of(args.sketch)
    inputs = {p.resolve() for p in sketches} | {p.resolve() for p in pool_pictures(args)} | (
        {args.reference.resolve()} if args.reference else set()) | (
        {args.background.resolve()} if args.background else set())
    names: dict = {}
    jobs = []
    for s in sketches:
        stem = s.stem if sum(t.stem == s.stem for t in sketches) == 1 else f"{s.stem}_{s.suffix.lstrip('.')}"
        out = args.out / f"{stem}_colorized.png"
        if out.resolve() in inputs:
            raise UsageError(f"{out} is an input: choose another --out")
        if out.exists() and not out.is_file():
            raise UsageError(f"{out} is in the way of a result (not a file): move it or choose another --out")
        names[out] = s
        jobs.append(Job(s, out))
    return jobs


def pool_pictures(args) -> list:
    if args.pool is None:
        return []
    if not args.pool.is_dir():
        raise UsageError(f"--pool {args.pool}: not a folder (a folder of colour references)")
    return pics.sketches_of(args.pool)


def check_models(info: dict, prompt: dict, models: dict, server: ComfyServer) -> None:
    for key, (ntype, widget) in MODEL_WIDGETS.items():
        nodes = [n for n in prompt.values() if n["class_type"] == ntype]
        if not nodes and not (key == "vae" and models.get("vae")):
            continue
        want = models.get(key) or (nodes[0]["inputs"].get(widget) if nodes else None)
        spec = info.get(ntype, {}).get("input", {}).get("required", {}).get(widget)
        options = spec[0] if spec and isinstance(spec[0], list) else (spec[1].get("options") if spec and len(spec) > 1
                                                                      and isinstance(spec[1], dict) else None)
        if want and options is not None and want not in options:
            have = ", ".join(options[:6]) or "nothing"
            raise UsageError(f"{want} is not in {FOLDERS[key]} of {server.url} (it has: {have}); put the file there "
                             f"or name another with --{key.replace('_', '-')}")


def server_url(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme == "http" and parts.hostname and (parts.port or 80)
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"--server {url}: give the server's address as http://HOST:PORT (e.g. http://127.0.0.1:8188)")
    return url


def answering(servers: list) -> tuple[list, dict]:
    """The servers that answer, the first of them the one whose /object_info was read."""
    live = [s for s in servers if s.alive()]
    while live:
        try:
            return live, live[0].object_info()
        except ServerDown:
            live.pop(0)
    raise UsageError(f"no server answers: {', '.join(s.url for s in servers)}")


def run(args, log=print) -> int:
    for path, what in ((args.reference, "reference"), (args.background, "background")):
        if path is not None:
            pics.check(path)
    workflow = args.workflow or args.mode or ("chapter" if args.pool else "vanilla")
    ui = load_ui(workflow)
    pool = pool_pictures(args)
    for path in pool:
        pics.check(path)
    jobs = plan(args)
    servers = [ComfyServer(server_url(u)) for u in args.server]
    embedded = None
    if not servers:
        from .embedded import Embedded

        embedded = Embedded(args.comfy_args, log=log)
        servers = [embedded.__enter__()]
    try:
        live, info = answering(servers)
        prompt = to_api(ui, info)
        models = {k: getattr(args, k) for k in MODEL_WIDGETS}
        models["clip_heads"] = args.clip_heads
        check_models(info, prompt, models, live[0])
        need = set(picture_nodes(prompt))
        if takes_pool(prompt) != (args.pool is not None):
            raise UsageError(f"the {workflow} workflow retrieves its references from a pool: --pool DIR"
                             if takes_pool(prompt) else
                             f"the {workflow} workflow takes one reference (--reference); --pool needs a workflow "
                             "with a Reference Pool node, e.g. --mode chapter")
        extra = {"Reference": args.reference} if args.reference is not None else {}
        if args.background is not None:
            if "Background" not in need:
                raise UsageError(f"the {workflow} workflow takes no background picture")
            extra["Background"] = args.background
        elif "Background" in need:
            raise UsageError(f"the {workflow} workflow needs a background picture: --background")
        settings = {k: getattr(args, k) for k in ("seed", "steps", "width", "height", "reference_scale",
                                                  "sketch_scale")}
        shared = results.settings(workflow_name(workflow), prompt, extra, models, settings, pool)
        resume(jobs, shared, args, log)
        t0 = time.perf_counter()
        Scheduler(live, prompt, extra, models, settings, log, args.verbose, pool=pool).run(jobs)
        return summary(jobs, time.perf_counter() - t0, log)
    finally:
        if embedded is not None:
            embedded.__exit__(None, None, None)


def workflow_name(workflow: str) -> str:
    return Path(workflow).name if workflow.endswith(".json") else MODES.get(workflow, workflow)


def resume(jobs: list, shared: dict, args, log) -> None:
    """Which sketches are done already: a result counts only when its record says these settings and this
    sketch made it. A damaged result is redone; results made otherwise are refused in one line (before any job)
    unless --overwrite."""
    otherwise: dict = {"settings": [], "sketch": [], "unknown": []}
    for job in jobs:
        try:
            pics.check(job.sketch)
        except pics.PictureError as exc:
            job.state, job.reason = "failed", str(exc)
            log(f"failed: {exc}")
            continue
        job.record = results.record(shared, job.sketch)
        if not job.output.exists() or args.overwrite:
            continue
        try:
            pics.check(job.output)
        except pics.PictureError:
            continue                       # a damaged earlier result is redone
        found = results.verdict(job.output, job.record)
        if found == "same":
            job.state, job.reason = "skipped", "done with these settings"
        else:
            otherwise[found].append(job)
    n = sum(map(len, otherwise.values()))
    if not n:
        return
    parts = []
    if otherwise["settings"]:
        first = otherwise["settings"][0]
        parts.append(f"{len(otherwise['settings'])} with other settings "
                     f"({results.differences(first.output, first.record)})")
    if otherwise["sketch"]:
        names = ", ".join(j.sketch.name for j in otherwise["sketch"][:3])
        parts.append(f"{len(otherwise['sketch'])} from another drawing of the same name ({names}"
                     f"{', ...' if len(otherwise['sketch']) > 3 else ''})")
    if otherwise["unknown"]:
        parts.append(f"{len(otherwise['unknown'])} with no record of their settings")
    raise UsageError(f"{args.out} holds {n} result{'s' if n > 1 else ''} made otherwise: {'; '.join(parts)}; "
                     f"pass --overwrite to replace {'them' if n > 1 else 'it'}, or another --out to keep "
                     f"{'them' if n > 1 else 'it'}")


def summary(jobs, seconds, log) -> int:
    done = [j for j in jobs if j.state == "done"]
    skipped = [j for j in jobs if j.state == "skipped"]
    failed = [j for j in jobs if j.state == "failed"]
    for j in failed:
        log(f"FAILED {j.sketch}: {j.reason}")
    per = f", {sum(j.seconds for j in done) / len(done):.1f} s per picture" if done else ""
    log(f"done {len(done)}, skipped {len(skipped)} (done with these settings), failed {len(failed)}; "
        f"{seconds:.0f} s{per}")
    for j in done:
        log(f"  wrote {j.output}")
    return EXIT_FAILED if failed else 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except (UsageError, WorkflowError, pics.PictureError, Rejected, ServerDown, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:                 # a file the client cannot read or a folder it cannot make
        print(f"error: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: finished results are kept; run the same command again to go on", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
