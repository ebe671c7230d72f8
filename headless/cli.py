"""Command line: ``python -m colorize_diffusion colorize|workflow|workflows ...`` (see docs/usage.md)."""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

from ..model_patches.modes import official_mode, unfinished
from .workflows import CLIP_VISION, EXAMPLE_REFERENCE, EXAMPLE_SKETCH, MODES, SIZE_BASE, WORKFLOWS, Options, build, workflow_stem

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _add_workflow_options(p: argparse.ArgumentParser) -> None:
    d = Options()
    p.add_argument("--mode", default="vanilla", choices=sorted(MODES, key=len), metavar="MODE",
                   help="vanilla | style (v2) | background | foreground | full (default: vanilla)")
    g = p.add_argument_group("models (names in ComfyUI's model folders, or paths to files)")
    g.add_argument("--checkpoint", help="ColorizeDiffusion checkpoint (default: the official file of the mode's "
                                        "family that is present: v2-full, switch-eps, mult-eps-newft/ft)")
    g.add_argument("--prediction", default="auto", choices=("auto", "eps", "v"))
    g.add_argument("--clip-vision", default=CLIP_VISION, help=f"CLIP ViT-H/14 vision tower (default {CLIP_VISION})")
    g.add_argument("--clip-heads", type=int, default=0, help="attention heads of an OpenCLIP tower (0 = infer)")
    g.add_argument("--vae", help="a separate VAE (only for checkpoints without one; default: the checkpoint's)")
    g = p.add_argument_group("sampling (official defaults)")
    g.add_argument("--steps", type=int, default=d.steps)
    g.add_argument("--seed", type=int, help="noise seed (default: random, printed)")
    g.add_argument("--sampler", default=d.sampler)
    g.add_argument("--scheduler", default=d.scheduler)
    g.add_argument("--reference-scale", type=float, default=d.reference_scale, help="reference guidance scale")
    g.add_argument("--sketch-scale", type=float, default=d.sketch_scale, help="sketch guidance scale")
    g = p.add_argument_group("conditioning (official defaults)")
    g.add_argument("--sketch-strength", type=float, default=d.sketch_strength)
    g.add_argument("--sketch-mask-threshold", type=float, default=d.sketch_mask_threshold)
    g.add_argument("--reference-mask-threshold", type=float, default=d.reference_mask_threshold)
    g.add_argument("--background-factor", type=float, default=d.background_factor)
    g.add_argument("--merge-scale", type=float, default=d.merge_scale)
    g = p.add_argument_group("size")
    g.add_argument("--width", type=int, default=0, help="generation width, multiple of 64 (0 = from the sketch)")
    g.add_argument("--height", type=int, default=0, help="generation height, multiple of 64 (0 = from the sketch)")
    g.add_argument("--size-base", type=int, help="automatic size ~ size_base² pixels (default 512 v1/v1.5, 768 v2)")
    g = p.add_argument_group("masks (background / foreground / full modes)")
    g.add_argument("--sketch-mask", type=Path, help="the sketch's character mask as a picture (white = character); "
                                                   "default: ISNet-sketch (sketch-segment.safetensors)")
    g.add_argument("--reference-mask", type=Path, help="the reference's character mask as a picture; default: ISNet "
                                                      "(isnetis.safetensors)")
    g.add_argument("--mask-channel", default="red", choices=("red", "green", "blue", "alpha"))
    g.add_argument("--mask-net-size", type=int, default=d.mask_net_size, help="ISNet input size (official 1024)")


def _add_host_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("host")
    g.add_argument("--comfyui-dir", help="ComfyUI folder (default: $COMFYUI_DIR, else .host/ComfyUI of this repo)")
    g.add_argument("--base-directory", help="ComfyUI --base-directory (models/, input/, output/ under it)")
    g.add_argument("--cpu", action="store_true", default=None,
                   help="run on the CPU (default: ComfyUI's own device choice; the CPU when there is no other)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--verbose", action="store_true", help="ComfyUI's INFO log")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m colorize_diffusion",
                                description="ColorizeDiffusion without the ComfyUI UI: the pack's example workflows "
                                            "run in this process on ComfyUI's executor.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("colorize", help="colour one sketch or a folder of sketches with one reference",
                       description="Colour SKETCH (a picture, or a folder of pictures) with REFERENCE's colours.")
    c.add_argument("--sketch", type=Path, required=True, help="sketch picture, or a folder of them")
    c.add_argument("--reference", type=Path, required=True, help="colour reference picture")
    c.add_argument("--background", type=Path, help="a separate background picture (background/style modes)")
    # a str, not a Path: Path("newdir/") drops the slash that says "a folder"
    c.add_argument("--out", required=True,
                   help="result .png (one sketch) or folder (<sketch name>.png per sketch; an existing folder or "
                        "a name ending in /); never one of the input pictures")
    _add_workflow_options(c)
    _add_host_options(c)
    w = sub.add_parser("workflow", help="print the API (or UI) JSON of a workflow with these options",
                       description="Print the prompt the colorize command would run (file names as given).")
    w.add_argument("--format", choices=("api", "ui"), default="api")
    w.add_argument("--workflow", choices=sorted(WORKFLOWS), help="an example workflow (default: from --mode)")
    w.add_argument("--sketch", default=EXAMPLE_SKETCH)
    w.add_argument("--reference", default=EXAMPLE_REFERENCE)
    w.add_argument("--background")
    _add_workflow_options(w)
    sub.add_parser("workflows", help="list the example workflows")
    return p


def options_from(args, *, checkpoint: str | None, family: str | None, masks: str) -> Options:
    return Options(
        checkpoint=checkpoint, family=family, prediction=args.prediction, clip_vision=args.clip_vision, clip_heads=args.clip_heads,
        vae=args.vae, masks=masks, mask_channel=args.mask_channel, width=args.width, height=args.height,
        size_base=args.size_base or (SIZE_BASE[family] if family else None), mask_net_size=args.mask_net_size,
        mode=MODES[args.mode], sketch_strength=args.sketch_strength, sketch_mask_threshold=args.sketch_mask_threshold,
        reference_mask_threshold=args.reference_mask_threshold, background_factor=args.background_factor,
        merge_scale=args.merge_scale, reference_scale=args.reference_scale, sketch_scale=args.sketch_scale,
        sampler=args.sampler, scheduler=args.scheduler, steps=args.steps,
        seed=args.seed if args.seed is not None else 0, seed_control="fixed")


def _check_args(args) -> None:
    for name in ("width", "height"):
        v = getattr(args, name)
        if v % 64:
            raise UsageError(f"--{name} {v}: use a multiple of 64 (0 = automatic)")
    if args.steps < 1:
        raise UsageError("--steps must be at least 1")


class UsageError(RuntimeError):
    pass


def cmd_colorize(args) -> int:
    from . import runner as R
    from . import weights as Wt

    _check_args(args)
    mode = MODES[args.mode]
    for what in ("sketch", "reference", "background", "sketch_mask", "reference_mask"):
        path = getattr(args, what)
        if path is not None and not path.exists():
            raise UsageError(f"--{what.replace('_', '-')} {path} does not exist")
    try:
        jobs = R.plan_jobs(args.sketch, args.out, inputs=[
            (f"--{what.replace('_', '-')}", getattr(args, what))
            for what in ("reference", "background", "sketch_mask", "reference_mask")])
    except R.HeadlessError as exc:      # an empty folder, a bad --out: bad arguments, exit code 2
        raise UsageError(str(exc)) from None
    # ComfyUI warns at length about optional extras it could not import; only --verbose shows its log
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.ERROR)
    if args.verbose:
        logging.basicConfig(level=logging.INFO)
    from . import host
    host.prepare(args.comfyui_dir, cpu=args.cpu, base_directory=args.base_directory)

    # weights: fail before anything heavy is loaded, with the file names and where to get them
    if args.checkpoint:
        checkpoint = Wt.resolve(Wt.CHECKPOINT_FOLDER, args.checkpoint)
    else:
        pref = ("v2",) if mode in ("style enhance", "full") else ("v2", "v1.5", "v1")
        checkpoint = Wt.default_checkpoint(pref)
    info = Wt.inspect_checkpoint(checkpoint)
    family = info["family"]
    parts = official_mode(mode, family or "v2")
    if family is not None and unfinished(family, parts):
        raise UsageError(f"--mode {args.mode} with {checkpoint}: {unfinished(family, parts)}")
    clip = Wt.resolve("clip_vision", args.clip_vision)
    vae = Wt.resolve("vae", args.vae) if args.vae else None
    if vae is None and info["has_vae"] is False:
        raise Wt.MissingWeights(f"{checkpoint} contains no VAE (the official checkpoints do): pass --vae NAME, a "
                                "file in models/vae such as the SD2.1 VAE")
    masks = "isnet"
    if parts.split:
        needs_ref_mask = parts.background and args.background is None
        given = [args.sketch_mask is not None] + ([args.reference_mask is not None] if needs_ref_mask else [])
        if any(given) and not all(given):
            raise UsageError("give both --sketch-mask and --reference-mask (or neither: ISNet computes both)")
        if all(given):
            masks = "files"
        else:
            Wt.check_preprocessors(["isnet_sketch"] + (["isnet"] if needs_ref_mask else []))
    if args.seed is None:
        args.seed = random.randint(0, 2**32 - 1)
    run = R.Runner(args.comfyui_dir, cpu=args.cpu, base_directory=args.base_directory)
    print(f"[colorize] {checkpoint} ({family or 'family unknown'}), mode {mode}, {args.steps} steps, "
          f"seed {args.seed}", file=sys.stderr)
    opts = options_from(args, checkpoint=checkpoint, family=family, masks=masks).with_(clip_vision=clip, vae=vae)
    stem = workflow_stem(mode, family)
    written = R.colorize(run, stem, opts, jobs, reference=args.reference, background=args.background,
                         sketch_mask=args.sketch_mask if masks == "files" else None,
                         reference_mask=args.reference_mask if masks == "files" else None,
                         progress=not args.no_progress)
    for path in written:
        print(path)
    return EXIT_OK


def cmd_workflow(args) -> int:
    _check_args(args)
    mode = MODES[args.mode]
    stem = args.workflow or workflow_stem(mode, None)
    opts = options_from(args, checkpoint=args.checkpoint, family=WORKFLOWS[stem].family,
                        masks="files" if args.sketch_mask else "isnet")
    opts = opts.with_(sketch=str(args.sketch), reference=str(args.reference), background=args.background,
                      mode=None if args.workflow else mode,
                      sketch_mask=str(args.sketch_mask or "sketch_mask.png"),
                      reference_mask=str(args.reference_mask or "reference_mask.png"),
                      seed_control="randomize" if args.seed is None else "fixed")
    g = build(stem, opts)
    if args.format == "api":
        print(json.dumps(g.to_api(), indent=2))
        return EXIT_OK
    from . import host
    logging.getLogger().setLevel(logging.ERROR)      # the host's warnings about optional extras it lacks
    host.setup(cpu=True)
    print(json.dumps(g.to_ui(host.object_info(sorted(g.node_types))), indent=2))
    return EXIT_OK


def cmd_workflows(args) -> int:
    for stem, spec in WORKFLOWS.items():
        print(f"{stem:26s} {spec.title}: {spec.description}")
    return EXIT_OK


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    root_level = logging.getLogger().level
    try:
        return {"colorize": cmd_colorize, "workflow": cmd_workflow, "workflows": cmd_workflows}[args.command](args)
    except KeyboardInterrupt:
        print("[colorize] interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every failure ends as one clear message and an exit code
        from . import host, runner, weights
        if isinstance(exc, (UsageError, weights.MissingWeights, host.HostError)):
            print(f"[colorize] error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, runner.HeadlessError):
            print(f"[colorize] failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise
    finally:
        logging.getLogger().setLevel(root_level)
