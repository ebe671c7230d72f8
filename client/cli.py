"""`python -m client colorize`: one sketch or a folder, on the embedded ComfyUI or on one or several servers."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import pictures as pics
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
        "Re-running the same command skips the sketches whose result exists."))
    c.add_argument("--sketch", required=True, type=Path, help="a line drawing, or a folder of them")
    refs = c.add_mutually_exclusive_group(required=True)
    refs.add_argument("--reference", type=Path, help="the colour reference")
    refs.add_argument("--pool", type=Path, help="a folder of colour references: each page gets the references "
                      "retrieved for it from the pool (ColorFlow's retrieval; mode chapter by default)")
    c.add_argument("--background", type=Path, help="a background picture (modes with one)")
    c.add_argument("--out", required=True, type=Path, help="output folder (created); <sketch name>_colorized.png")
    c.add_argument("--mode", help=f"{', '.join(MODES)} (default: vanilla, with --pool chapter; colorflow, "
                   "colorflow-shading and colorflow-grey take --pool too); or --workflow")
    c.add_argument("--workflow", help="a workflow .json saved from ComfyUI instead of a mode")
    c.add_argument("--server", action="append", default=[], metavar="URL",
                   help="a running ComfyUI with the pack (repeat for several); none: the embedded one")
    for name in MODEL_WIDGETS:
        c.add_argument(f"--{name.replace('_', '-')}", help=f"file in {FOLDERS[name]} (default: the workflow's)")
    c.add_argument("--clip-heads", type=int, help="attention heads of a CLIP tower of unknown size")
    c.add_argument("--seed", type=int)
    c.add_argument("--steps", type=int)
    c.add_argument("--width", type=int, help="generation width (multiple of 32)")
    c.add_argument("--height", type=int)
    c.add_argument("--reference-scale", type=float)
    c.add_argument("--sketch-scale", type=float)
    c.add_argument("--overwrite", action="store_true", help="replace existing results instead of skipping them")
    c.add_argument("--verbose", action="store_true", help="progress per step; the server's traceback on errors")
    c.add_argument("--comfy-args", nargs=argparse.REMAINDER, default=[],
                   help="further arguments for the embedded ComfyUI (e.g. --base-directory DIR)")
    return ap


def plan(args) -> list:
    """Jobs for the sketches; refuses outputs that would overwrite an input or each other."""
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
    servers = [ComfyServer(u) for u in args.server]
    embedded = None
    if not servers:
        from .embedded import Embedded

        embedded = Embedded(args.comfy_args, log=log)
        servers = [embedded.__enter__()]
    try:
        live = [s for s in servers if s.alive()]
        if not live:
            raise UsageError(f"no server answers: {', '.join(s.url for s in servers)}")
        info = live[0].object_info()
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
        for job in jobs:
            if job.output.exists() and not args.overwrite:
                try:
                    pics.check(job.output)
                    job.state, job.reason = "skipped", "result exists"
                    continue
                except pics.PictureError:
                    pass                       # a damaged earlier result is redone
            try:
                pics.check(job.sketch)
            except pics.PictureError as exc:
                job.state, job.reason = "failed", str(exc)
                log(f"failed: {exc}")
        settings = {k: getattr(args, k) for k in ("seed", "steps", "width", "height", "reference_scale",
                                                  "sketch_scale")}
        t0 = time.perf_counter()
        Scheduler(live, prompt, extra, models, settings, log, args.verbose, pool=pool).run(jobs)
        return summary(jobs, time.perf_counter() - t0, log)
    finally:
        if embedded is not None:
            embedded.__exit__(None, None, None)


def summary(jobs, seconds, log) -> int:
    done = [j for j in jobs if j.state == "done"]
    skipped = [j for j in jobs if j.state == "skipped"]
    failed = [j for j in jobs if j.state == "failed"]
    for j in failed:
        log(f"FAILED {j.sketch}: {j.reason}")
    per = f", {sum(j.seconds for j in done) / len(done):.1f} s per picture" if done else ""
    log(f"done {len(done)}, skipped {len(skipped)} (result exists), failed {len(failed)}; {seconds:.0f} s{per}")
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
    except KeyboardInterrupt:
        print("interrupted: finished results are kept; run the same command again to go on", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
