"""Every example workflow end to end on CPU with the tiny models: in-process through ComfyUI's executor (the
executor driver of devtools/) and over HTTP on the session server (the HTTP client has its own tests,
tests/test_client.py).

The graphs are the shipped ones (devtools.workflows.build) with e2e_support.variant_options: tiny checkpoint,
tiny CLIP, a tiny VAE file through Load VAE, masks from the pictures, 64×64, 2 steps.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import numpy as np
import torch
import pytest

import e2e_support as S
from colorize_diffusion.devtools import executor as R
from colorize_diffusion.devtools import workflows as wf
from conftest import COMFYUI_DIR, GOLDEN, REPO


STEMS = list(wf.WORKFLOWS)
BATCH = sorted(p.name for p in [Path("a.png"), Path("b.png")])     # e2e_support.write_inputs' batch folder


def _expected_count(stem):
    return len(BATCH) if wf.WORKFLOWS[stem].batch else 1


def _shapes(stem, images):
    """Each result's size: the generation size, for the chapter workflow the page's own (colours under it), for
    ColorFlow the decolorized page's (1.5x the working resolution, as in the app)."""
    if wf.WORKFLOWS[stem].family in S.COLORFLOW_BASES:
        from colorize_diffusion.nodes.retrieval_nodes import RESOLUTIONS

        width, height = RESOLUTIONS[S.variant_options(stem).pool_resolution]
        return all(img.shape == (int(height * 1.5), int(width * 1.5), 3) for img in images)
    if wf.WORKFLOWS[stem].chapter:
        return sorted(img.shape for img in images) == sorted([(64, 64, 3), (96, 64, 3)])
    return all(img.shape == (S.SIZE, S.SIZE, 3) for img in images)


def _background(stem):
    """style enhance also runs with a separate background picture (the other path of the v2 encoders)."""
    return "background.png" if stem == "style_enhance_v2" else None


# ==========================================================================================================
# In-process (headless runner = execution.PromptExecutor)
# ==========================================================================================================
def _link_models(models: Path, vae_file: Path) -> Path:
    for sub in ("colorizediffusion/preprocessors", "clip_vision", "vae"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    for f in S.TINY_CHECKPOINTS.values():
        dest = models / "colorizediffusion" / f
        if (GOLDEN / "models" / f).is_file():
            dest.exists() or dest.symlink_to(GOLDEN / "models" / f)
    from server_fixture import GOLDEN_XL, link_golden_models
    link_golden_models(GOLDEN_XL, models)
    link_golden_models(S.GOLDEN_COLORFLOW, models)
    link_golden_models(S.GOLDEN_COLORFLOW_DECOLORIZE, models)
    for name in (S.TINY_CLIP, S.TINY_TEXT_TOWER, S.TINY_TEXT_TOWER.replace(".safetensors", ".json")):
        dest = models / "clip_vision" / name
        dest.exists() or dest.symlink_to(GOLDEN / "clip" / name)
    dest = models / "vae" / S.TINY_VAE
    dest.exists() or dest.symlink_to(vae_file)
    return models


@pytest.fixture(scope="session")
def tiny_vae_file(tmp_path_factory):
    return S.write_tiny_vae(tmp_path_factory.mktemp("tiny_vae") / S.TINY_VAE)


@pytest.fixture(scope="module")
def inproc(tmp_path_factory, tiny_vae_file):
    """The headless Runner with ComfyUI's model/input/output folders pointed at a temporary tree."""
    import folder_paths

    root = tmp_path_factory.mktemp("inproc")
    models = _link_models(root / "models", tiny_vae_file)
    S.write_inputs(root / "input")
    (root / "output").mkdir()
    st = {".safetensors"}
    import torch
    threads = torch.get_num_threads()
    # tiny models: one thread is as fast on an idle machine and up to 8x faster on a busy 2-core one (no
    # OpenMP spin-waiting against the server process)
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(folder_paths.folder_names_and_paths, "colorizediffusion", ([str(models / "colorizediffusion")], st))
        mp.setitem(folder_paths.folder_names_and_paths, "clip_vision", ([str(models / "clip_vision")], st))
        mp.setitem(folder_paths.folder_names_and_paths, "vae", ([str(models / "vae")], st))
        mp.setitem(folder_paths.folder_names_and_paths, "colorizediffusion_preprocessors",
                   ([str(models / "colorizediffusion" / "preprocessors")], set()))
        mp.setitem(folder_paths.folder_names_and_paths, "colorizediffusion_tagger",
                   ([str(models / "colorizediffusion" / "tagger")], st))
        mp.setitem(folder_paths.folder_names_and_paths, "colorflow", ([str(models / "colorflow")], set()))
        mp.setitem(folder_paths.folder_names_and_paths, "diffusers", ([str(models / "diffusers")], {"folder"}))
        mp.setattr(folder_paths, "input_directory", str(root / "input"))
        mp.setattr(folder_paths, "output_directory", str(root / "output"))
        runner = R.Runner()
        runner.root = root
        try:
            yield runner
        finally:
            torch.set_num_threads(threads)


IN_PROCESS: dict[str, list[np.ndarray]] = {}    # each stem's in-process result, for the HTTP tests to compare with


def _run(runner, stem, **changes):
    opts = S.variant_options(stem, **changes)
    result = runner.run(wf.build(stem, opts).to_api())
    return [S.load_png(p) for p in result.image_files(kinds=("output",))]


@pytest.mark.parametrize("stem", STEMS)
def test_workflow_runs_in_process(inproc, stem):
    images = _run(inproc, stem, background=_background(stem))
    IN_PROCESS[stem] = images
    assert len(images) == _expected_count(stem)
    assert _shapes(stem, images), [img.shape for img in images]
    for img in images:
        assert img.std() > 1, "a constant picture: the graph did not reach the decoder properly"


def test_same_inputs_same_output_changed_parameters_differ(inproc):
    """Same inputs and seed give the same pixels (the second run under another file name, so that nothing
    comes from the executor's cache); each parameter acts."""
    inp = inproc.root / "input"
    for stem in ("vanilla", "full_enhance_v2"):
        a, b = f"det_{stem}_a.png", f"det_{stem}_b.png"
        shutil.copyfile(inp / "sketch.png", inp / a)
        shutil.copyfile(inp / "sketch.png", inp / b)
        base = _run(inproc, stem, sketch=a)[0]
        assert np.array_equal(base, _run(inproc, stem, sketch=b)[0]), f"{stem}: not deterministic"
        changes = ([{"seed": 99}, {"reference_scale": 2.0}, {"reference": "background.png"}] if stem == "vanilla"
                   else [{"sketch_scale": 2.5}, {"merge_scale": 0.5}, {"background_factor": 0.2}])
        for change in changes:
            other = _run(inproc, stem, sketch=a, **change)[0]
            assert not np.array_equal(base, other), f"{stem}: {change} changed nothing"


def test_xl_encoders_and_reference_net_run_once_per_prompt(inproc, monkeypatch):
    """The XL background graph through ComfyUI's executor: the sketch encoder, the reference projection and the
    ReferenceNet run once for the prompt (not per step), nothing on an unchanged re-queue; a new sketch (a new mask,
    so new banks) runs the ReferenceNet again and the banks are never reused across prompts."""
    from colorize_diffusion.model_patches.colorize_diffusion.networks import reference_net

    calls = []
    original = reference_net.ReferenceNet.banks

    def counted(self, x, y):
        out = original(self, x, y)
        calls.append([b.detach().clone() for b in out])
        return out

    monkeypatch.setattr(reference_net.ReferenceNet, "banks", counted)
    inp = inproc.root / "input"
    shutil.copyfile(inp / "sketch.png", inp / "xl_once.png")
    first = _run(inproc, "background_enhance_xl", sketch="xl_once.png", steps=3)[0]
    assert len(calls) == 1, f"the ReferenceNet ran {len(calls)} times for one prompt of 3 steps"
    again = _run(inproc, "background_enhance_xl", sketch="xl_once.png", steps=3)[0]
    assert len(calls) == 1 and np.array_equal(first, again), "an unchanged re-queue ran the ReferenceNet again"
    S.sketch_picture(shift=12).save(inp / "xl_other.png")
    _run(inproc, "background_enhance_xl", sketch="xl_other.png", steps=3)
    assert len(calls) == 2
    assert any(not torch.equal(a, b) for a, b in zip(calls[0], calls[1])), "another sketch mask, the same banks"


def test_interrupt_mid_sampling_leaves_next_run_correct(inproc):
    import comfy.model_management as mm

    inp = inproc.root / "input"
    for name in ("int_a.png", "int_b.png", "int_c.png"):      # same picture, three cache identities
        shutil.copyfile(inp / "sketch.png", inp / name)
    stem = "full_enhance_v2"
    first = _run(inproc, stem, sketch="int_a.png", steps=4)[0]

    seen = []

    def stop_after_first_step(event, data):
        if event == "progress":
            seen.append(data["value"])
            if data["value"] == 1:
                mm.interrupt_current_processing(True)

    prompt = wf.build(stem, S.variant_options(stem, sketch="int_b.png", steps=4)).to_api()
    with pytest.raises(R.Interrupted, match="SamplerCustomAdvanced"):
        inproc.run(prompt, listener=stop_after_first_step)
    assert seen == [1], f"sampling went on after the interrupt: {seen}"
    assert not mm.processing_interrupted()
    after = _run(inproc, stem, sketch="int_c.png", steps=4)[0]
    assert np.array_equal(first, after), "the run after an interrupt differs from an uninterrupted run"


def test_shipped_isnet_mask_nodes_run_with_random_weights(inproc):
    """The shipped background graph as is (ISNet sketch and reference masks), with random ISNet weights."""
    import torch
    from safetensors.torch import save_file

    from colorize_diffusion.model_patches.common import extra_networks
    from colorize_diffusion.preprocess.isnet import ISNetDIS

    folder = inproc.root / "models" / "colorizediffusion" / "preprocessors"
    net = ISNetDIS()
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = v
        elif k.endswith("running_var"):
            sd[k] = torch.ones_like(v)
        elif k.endswith("running_mean") or k.endswith("bias"):
            sd[k] = torch.zeros_like(v)
        elif v.ndim >= 2:
            sd[k] = torch.randn(v.shape, generator=g) * (1.25 / math.sqrt(math.prod(v.shape[1:])))
        else:
            sd[k] = torch.ones_like(v)
    save_file(sd, str(folder / "sketch-segment.safetensors"))
    (folder / "isnetis.safetensors").symlink_to(folder / "sketch-segment.safetensors")
    extra_networks.clear()
    try:
        images = _run(inproc, "background_enhance_v2", masks="isnet", mask_net_size=256)
    finally:
        extra_networks.clear()
        for f in folder.iterdir():
            f.unlink()
    assert len(images) == 1 and images[0].shape == (S.SIZE, S.SIZE, 3)



# ==========================================================================================================
# Over HTTP on the session server (scripts/run.sh)
# ==========================================================================================================
@pytest.fixture(scope="module")
def http(comfy_server):
    S.prepare_server(comfy_server)
    return comfy_server


def queue(server, prompt, client_id=None) -> str:
    status, body = server.post_json("/prompt", {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex})
    assert status == 200, body
    return body["prompt_id"]


def wait(server, prompt_id, timeout=180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hist = server.get_json(f"/history/{prompt_id}")
        if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
            entry = hist[prompt_id]
            if entry["status"]["status_str"] != "pending":
                return entry
        time.sleep(0.1)
    raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")


def images_of(server, entry) -> list[np.ndarray]:
    from io import BytesIO

    from PIL import Image
    out = []
    for node_out in entry["outputs"].values():
        for img in node_out.get("images", []):
            if img["type"] != "output":     # the previews (advanced workflows) are checked in-process
                continue
            q = urllib.parse.urlencode({"filename": img["filename"], "subfolder": img["subfolder"],
                                        "type": img["type"]})
            status, body = server.get(f"/view?{q}")
            assert status == 200
            out.append(np.asarray(Image.open(BytesIO(body)).convert("RGB")))
    return out


def run_http(server, stem, **changes) -> list[np.ndarray]:
    prompt = wf.build(stem, S.variant_options(stem, **changes)).to_api()
    entry = wait(server, queue(server, prompt))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-3000:]
    return images_of(server, entry)


@pytest.mark.parametrize("stem", STEMS)
def test_workflow_runs_over_http(http, inproc, stem):
    """The served graph gives the pixels the same graph and seed give in-process (same files, one thread each)."""
    images = run_http(http, stem, background=_background(stem), filename_prefix=f"http/{stem}")
    assert len(images) == _expected_count(stem)
    assert _shapes(stem, images), [img.shape for img in images]
    expected = IN_PROCESS.get(stem) or _run(inproc, stem, background=_background(stem))
    for i, (got, want) in enumerate(zip(images, expected)):
        assert got.shape == want.shape, (i, got.shape, want.shape)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() == 0, f"{stem} picture {i}: the server's result differs from the in-process one " \
                                f"(max {diff.max()}, {np.count_nonzero(diff)} values)"


def _copies(server, *names):
    inp = server.base_dir / "input"
    for name in names:
        shutil.copyfile(inp / "sketch.png", inp / name)


def test_http_same_inputs_same_output_changed_parameters_differ(http):
    _copies(http, "det_a.png", "det_b.png")     # distinct names: nothing comes from the server's cache
    a = run_http(http, "full_enhance_v2", sketch="det_a.png")[0]
    b = run_http(http, "full_enhance_v2", sketch="det_b.png")[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, run_http(http, "full_enhance_v2", sketch="det_b.png", seed=7)[0])


def test_http_interrupt_mid_sampling_leaves_next_run_correct(http):
    import aiohttp

    _copies(http, "hint_a.png", "hint_b.png", "hint_c.png")
    stem = "vanilla"
    first = run_http(http, stem, sketch="hint_a.png", steps=3)[0]

    async def interrupted_run():
        cid = uuid.uuid4().hex
        ws_url = http.url.replace("http://", "ws://") + f"/ws?clientId={cid}"
        events = []
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as ws:
            prompt = wf.build(stem, S.variant_options(stem, sketch="hint_b.png", steps=60)).to_api()
            async with s.post(http.url + "/prompt", json={"prompt": prompt, "client_id": cid}) as r:
                pid = (await r.json())["prompt_id"]
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                if m.get("data", {}).get("prompt_id") != pid:
                    continue
                events.append((m["type"], m["data"].get("value")))
                if m["type"] == "progress" and m["data"].get("value") == 1:
                    async with s.post(http.url + "/interrupt", json={}) as r:
                        assert r.status == 200
                if m["type"] in ("execution_interrupted", "execution_success", "execution_error"):
                    return pid, events

    pid, events = asyncio.run(asyncio.wait_for(interrupted_run(), 240))
    assert events[-1][0] == "execution_interrupted", events
    steps_done = [v for t, v in events if t == "progress"]
    assert max(steps_done) < 60, "the interrupt came too late to test anything"
    entry = wait(http, pid)
    assert entry["status"]["status_str"] == "error"
    assert any(m[0] == "execution_interrupted" for m in entry["status"]["messages"])
    after = run_http(http, stem, sketch="hint_c.png", steps=3)[0]
    assert np.array_equal(first, after), "the run after an interrupt differs from an uninterrupted run"




def test_vanilla_graph_gives_the_golden_path_picture(inproc, tiny_vae_file):
    """The shipped vanilla graph through ComfyUI's executor (its loaders and widget values, Random Noise, Basic
    Scheduler, KSampler Select, SamplerCustomAdvanced, VAE Decode) gives the picture the golden path computes without
    the graph: the checkpoint and the CLIP tower read as the golden tests read them, the pack's nodes called with
    the official app's values written out here, and the ColorizeDiffusion guider sampled by the golden runners' own
    Euler loop (golden_support.model_eval.guided_step, which the level-E cases prove against the official DDIM)."""
    import comfy.sample
    import comfy.samplers
    import comfy.sd
    import comfy.utils
    from chain_support import node
    from golden_support.model_eval import guided_step

    from colorize_diffusion.model_patches.colorize_diffusion.checkpoint import load_checkpoint
    from colorize_diffusion.model_patches.common.clip_vision import load_vision_file

    steps, seed = 3, 1234
    got = _run(inproc, "vanilla", sampler="euler", steps=steps, seed=seed)[0]

    def picture(name):
        return torch.from_numpy(S.load_png(inproc.root / "input" / name).copy()).float()[None] / 255

    ckpt = load_checkpoint(str(GOLDEN / "models" / S.TINY_CHECKPOINTS["v1"]))
    clip = load_vision_file(str(GOLDEN / "clip" / S.TINY_CLIP), heads=4)
    _, _, _, sketch = node("ColorizeDiffusionPrepareSketch", image=picture("sketch.png"), width=S.SIZE, height=S.SIZE,
                           method="none", polarity="auto")
    reference = node("ColorizeDiffusionEncodeReference", clip_vision=clip, image=picture("reference.png"))[0]
    model, positive, negative, latent = node("ColorizeDiffusionApplySketch", model=ckpt.model,
                                             colorizer=ckpt.colorizer, sketch=sketch, reference=reference,
                                             sketch_strength=1.0)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", steps)
    noise = comfy.sample.prepare_noise(latent["samples"], seed)
    _, _, states = guided_step(model, positive, negative, None, noise, [float(s) for s in sigmas[:-1]],
                               4.0, 1.0, "eps")
    samples = model.model.process_latent_out(states[-1])
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(tiny_vae_file)))
    with torch.no_grad():
        decoded = vae.decode(samples)[0]
    want = np.clip(255.0 * decoded.numpy(), 0, 255).astype(np.uint8)      # as Save Image writes it

    assert got.shape == want.shape
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() == 0, f"the graph's picture differs from the golden path's (max {diff.max()}, " \
                            f"{np.count_nonzero(diff)} values)"
    assert got.std() > 1
