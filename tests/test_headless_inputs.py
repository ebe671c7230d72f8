"""The headless command never writes over what the user gave, read `--out newdir/`
as a folder, use exactly the weight file given by path, leave the device choice to ComfyUI, and report bad
arguments with exit code 2. No model runs here: the checks happen before anything is loaded."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from colorize_diffusion.headless import cli, host
from colorize_diffusion.headless import runner as R
from colorize_diffusion.headless import weights as Wt
from conftest import REPO

PNG = b"\x89PNG\r\n\x1a\n not really a picture"


def _pic(path: Path, data: bytes = PNG) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _cli(*argv) -> int:
    return cli.main(["colorize", *map(str, argv)])


# ----------------------------------------------------------------------------------------------------------
# 1. results never overwrite an input picture; two sketches never share a result
# ----------------------------------------------------------------------------------------------------------
def test_out_that_is_the_sketch_is_refused(tmp_path):
    s = _pic(tmp_path / "s.png")
    with pytest.raises(R.HeadlessError, match=r"--out .*s\.png is the sketch itself; choose another"):
        R.plan_jobs(s, s)
    # the same file through another spelling (a relative path with ..)
    other = tmp_path / "sub" / ".." / "s.png"
    (tmp_path / "sub").mkdir()
    with pytest.raises(R.HeadlessError, match="the sketch itself"):
        R.plan_jobs(s, other)


def test_out_folder_that_holds_the_sketches_is_refused(tmp_path):
    d = tmp_path / "sketches"
    _pic(d / "a.png")
    _pic(d / "b.jpg")
    with pytest.raises(R.HeadlessError, match=r"would overwrite the sketch .*a\.png"):
        R.plan_jobs(d, d)
    # a single sketch into its own folder
    with pytest.raises(R.HeadlessError, match=r"would overwrite the sketch .*a\.png"):
        R.plan_jobs(d / "a.png", d)


def test_two_sketches_with_one_result_name_are_refused(tmp_path):
    d = tmp_path / "sketches"
    _pic(d / "a.png")
    _pic(d / "a.jpg")
    _pic(d / "b.png")
    with pytest.raises(R.HeadlessError) as e:
        R.plan_jobs(d, tmp_path / "out")
    msg = str(e.value)
    assert "a.jpg" in msg and "a.png" in msg and str(tmp_path / "out" / "a.png") in msg


def test_out_over_reference_background_or_mask_is_refused(tmp_path):
    s = _pic(tmp_path / "s.png")
    for opt in ("--reference", "--background", "--sketch-mask", "--reference-mask"):
        given = _pic(tmp_path / f"{opt.strip('-')}.png")
        with pytest.raises(R.HeadlessError, match=f"is the {opt} picture"):
            R.plan_jobs(s, given, inputs=[(opt, given)])
    # a folder result that lands on the reference: out/x.png from sketch x.png
    out = tmp_path / "out"
    ref = _pic(out / "s.png")
    with pytest.raises(R.HeadlessError, match=r"would overwrite the --reference picture"):
        R.plan_jobs(s, out, inputs=[("--reference", ref)])
    # through a link: --out is a link to the reference
    link = tmp_path / "link.png"
    link.symlink_to(ref)
    with pytest.raises(R.HeadlessError, match="is the --reference picture"):
        R.plan_jobs(s, link, inputs=[("--reference", ref)])


def test_valid_plans_still_pass(tmp_path):
    d = tmp_path / "sketches"
    _pic(d / "a.png")
    _pic(d / "b.jpg")
    ref = _pic(tmp_path / "r.png")
    jobs = R.plan_jobs(d, tmp_path / "out", inputs=[("--reference", ref), ("--background", None)])
    assert [(j.sketch.name, j.out) for j in jobs] == [("a.png", tmp_path / "out" / "a.png"),
                                                      ("b.jpg", tmp_path / "out" / "b.png")]
    # an existing result (not an input) may be replaced, as before
    old = _pic(tmp_path / "result.png")
    assert R.plan_jobs(d / "a.png", old)[0].out == old


def test_cli_refuses_out_equal_sketch_with_exit_2_and_keeps_the_sketch(tmp_path, capsys):
    s = _pic(tmp_path / "s.png")
    r = _pic(tmp_path / "r.png", b"reference")
    assert _cli("--sketch", s, "--reference", r, "--out", s) == cli.EXIT_USAGE
    assert "is the sketch itself" in capsys.readouterr().err
    assert _cli("--sketch", s, "--reference", r, "--out", r) == cli.EXIT_USAGE
    assert "is the --reference picture" in capsys.readouterr().err
    assert s.read_bytes() == PNG and r.read_bytes() == b"reference"


# ----------------------------------------------------------------------------------------------------------
# 3. --out newdir/ is a folder
# ----------------------------------------------------------------------------------------------------------
def test_out_with_trailing_slash_is_a_folder(tmp_path):
    s = _pic(tmp_path / "s.jpg")
    r = _pic(tmp_path / "r.png")
    args = cli.parser().parse_args(["colorize", "--sketch", str(s), "--reference", str(r),
                                    "--out", str(tmp_path / "newdir") + "/"])
    (job,) = R.plan_jobs(args.sketch, args.out)
    assert job.out == tmp_path / "newdir" / "s.png"
    # an existing folder without the slash, too
    (tmp_path / "existing").mkdir()
    assert R.plan_jobs(s, tmp_path / "existing")[0].out == tmp_path / "existing" / "s.png"
    # a new name without slash or .png stays an error
    with pytest.raises(R.HeadlessError, match="give a .png name or a folder"):
        R.plan_jobs(s, tmp_path / "newname")


# ----------------------------------------------------------------------------------------------------------
# 5. bad arguments found by plan_jobs: exit code 2
# ----------------------------------------------------------------------------------------------------------
def test_plan_errors_exit_with_usage_code(tmp_path, capsys):
    r = _pic(tmp_path / "r.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cli("--sketch", empty, "--reference", r, "--out", tmp_path / "o") == cli.EXIT_USAGE == 2
    assert "no pictures" in capsys.readouterr().err
    s = _pic(tmp_path / "s.png")
    assert _cli("--sketch", s, "--reference", r, "--out", tmp_path / "o.jpg") == 2
    assert "results are PNG files" in capsys.readouterr().err
    d = tmp_path / "d"
    _pic(d / "x.png")
    assert _cli("--sketch", d, "--reference", r, "--out", r) == 2      # a folder of sketches into a file


# ----------------------------------------------------------------------------------------------------------
# 2. a weight file given by path is the file used
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def model_folder(tmp_path, monkeypatch):
    """The pack's checkpoint folder (and clip_vision) replaced by a temporary one holding model.safetensors."""
    host.prepare()
    import folder_paths
    models = tmp_path / "models"
    for key in (Wt.CHECKPOINT_FOLDER, "clip_vision"):
        d = models / key
        _pic(d / "model.safetensors", b"the model folder's file")
        monkeypatch.setitem(folder_paths.folder_names_and_paths, key,
                            ([str(d)], set(folder_paths.supported_pt_extensions)))
    return models


@pytest.mark.parametrize("key", [Wt.CHECKPOINT_FOLDER, "clip_vision"])
def test_weight_file_by_path_wins_over_same_name_in_model_folder(tmp_path, model_folder, key):
    import folder_paths
    mine = _pic(tmp_path / "mine" / "model.safetensors", b"the user's file")
    _pic(tmp_path / "mine" / "deep" / "other.safetensors", b"not to be scanned")
    name = Wt.resolve(key, str(mine))
    assert os.path.basename(name) == "model.safetensors"        # the name keeps the official prediction rule
    full = folder_paths.get_full_path(key, name)
    assert full is not None and os.path.samefile(full, mine)
    assert Path(full).read_bytes() == b"the user's file"
    # the user's folder is not added (it would be scanned recursively), and the loaders' list holds the name
    assert str(tmp_path / "mine") not in folder_paths.get_folder_paths(key)
    assert "deep/other.safetensors" not in folder_paths.get_filename_list(key)
    assert name in folder_paths.get_filename_list(key)
    # a plain name still means the file in the model folder
    assert Wt.resolve(key, "model.safetensors") == "model.safetensors"


def test_two_given_files_with_one_name_stay_apart(tmp_path, model_folder):
    import folder_paths
    key = Wt.CHECKPOINT_FOLDER
    a = _pic(tmp_path / "a" / "v2-full.safetensors", b"a")
    b = _pic(tmp_path / "b" / "v2-full.safetensors", b"b")
    na, nb = Wt.resolve(key, str(a)), Wt.resolve(key, str(b))
    assert na != nb
    assert os.path.samefile(folder_paths.get_full_path(key, na), a)
    assert os.path.samefile(folder_paths.get_full_path(key, nb), b)
    assert Wt.resolve(key, str(a)) == na                           # the same file again: the same name


# ----------------------------------------------------------------------------------------------------------
# 4. without --cpu, ComfyUI chooses the device
# ----------------------------------------------------------------------------------------------------------
def test_device_choice_is_left_to_comfyui(monkeypatch):
    from comfy.cli_args import args
    monkeypatch.delitem(sys.modules, "comfy.model_management", raising=False)   # "before ComfyUI loads"
    monkeypatch.setattr(args, "cpu", False)
    monkeypatch.setattr(args, "disable_auto_launch", args.disable_auto_launch)
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)     # e.g. a Mac (MPS) or an Intel GPU (XPU)
    monkeypatch.setattr(host, "accelerator_present", lambda: True)
    host.prepare()
    assert args.cpu is False
    host.prepare(cpu=True)
    assert args.cpu is True
    # no accelerator at all: the CPU (ComfyUI could not start otherwise)
    monkeypatch.setattr(args, "cpu", False)
    monkeypatch.setattr(host, "accelerator_present", lambda: False)
    host.prepare()
    assert args.cpu is True
