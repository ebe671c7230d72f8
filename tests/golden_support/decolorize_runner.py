"""ColorFlow decolorize cases (../shared/golden_colorflow_decolorize, README §5-6): the page through the pack's
decolorize step with the case's target size and style, the released-layout models of the case's root, the noise
regenerated from the case's seeds and the dropout masks taken from the case.

Rules (README §5): float tensors max|R - E| <= rtol_rms * rms(E); uint8 pictures atol from the case (0 exact, 1
where a network float is truncated); `X.sha256` = sha256 of the C-ordered float32 bytes (A, L exact; noise: the
digest is reported, the probe must agree to 1e-5, torch's non-vectorised randn kernel differs by ~2e-6).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch

NOISE_PROBE_ATOL = 1e-5
PROBE_STEP = {"A": 16, "L": 16}      # README §5: A/L probes [..., ::16, ::16], noise [..., ::8, ::8]


def _probe_step(case: dict, name: str) -> int:
    """The probe's stride as case.json's `storage` entry states it (`probe [..., ::16, ::16]`), else README §5's."""
    found = re.search(r"::(\d+)", str((case.get("storage") or {}).get(name, "")))
    return int(found.group(1)) if found else PROBE_STEP.get(name, 8)


def is_decolorize_case(case: dict) -> bool:
    return "style" in case and "target_wh" in case and "process_image" in case


def _noise(case: dict) -> list[torch.Tensor]:
    draws = (case.get("noise") or {}).get("draws", [])
    return [torch.randn(d["shape"], generator=torch.Generator().manual_seed(int(d["seed"]))) for d in draws]


def _masks(case: dict, case_dir: Path) -> list[torch.Tensor]:
    from safetensors.torch import load_file

    draws = (case.get("dropout") or {}).get("draws", [])
    if not draws:
        return []
    stored = load_file(str(case_dir / "expected.safetensors"))
    return [stored[d["key"]].float() for d in draws]


def run(case: dict, inputs: dict, case_dir: Path, base: Path) -> dict:
    from colorize_diffusion.preprocess.decolorize import decolorize
    from colorize_diffusion.preprocess.decolorize_files import load_decolorize_models
    from colorize_diffusion.preprocess.screen_vae import ScreenRandom

    width, height = _target(case)
    style = case["style"]
    nets = load_decolorize_models(str(base / "models"), style)
    noise = _noise(case)
    random = ScreenRandom(noise=noise, masks=_masks(case, case_dir))
    page = inputs["page_u8"].numpy()
    _check_page(case, page)
    out = decolorize(page, style, width, height, nets, random)
    _check_record(case, out, width, height)
    for d, t in zip(case.get("noise", {}).get("draws", []), noise):
        out[d["key"]] = t
    return out


def _target(case: dict) -> tuple[int, int]:
    """The decolorize size from the case's working resolution (a preset `WxH` or the custom one), as the app
    derives it (1.5x); the case's target_wh must agree."""
    from colorize_diffusion.preprocess.decolorize import target_size

    custom = case.get("custom_resolution")
    preset = case.get("resolution")
    working = custom if custom is not None else [int(v) for v in str(preset).split("x")]
    width, height = target_size(int(working[0]), int(working[1]))
    assert [width, height] == [int(v) for v in case["target_wh"]], (width, height, case["target_wh"])
    return width, height


def _check_page(case: dict, page: np.ndarray) -> None:
    record = case["page"]
    assert list(record["size_wh"]) == [page.shape[1], page.shape[0]], record
    if record["kind"] == "grey":
        assert (page == page[..., :1]).all(), "a grey page with unequal channels"


def _check_record(case: dict, out: dict, width: int, height: int) -> None:
    """The case's record of process_image and the paddings agrees with what the pack's step did."""
    fit, want = out["process_image"], case["process_image"]
    assert fit["branch"] == want["branch"] and list(fit["box"]) == list(want["box"]), (fit, want)
    assert abs(fit["ratio_error"] - float(want["ratio_error"])) < 1e-12, (fit, want)
    pad = case["padding"]
    assert list(pad["h_w"]) == [height, width], pad
    if "padded_to_16" in pad:
        assert list(out["net_input"].shape[-2:]) == list(pad["padded_to_16"]), pad
    if "padded_to_256" in pad:
        assert list(out["A"].shape[-2:]) == list(pad["padded_to_256"]), pad
        decoder = [int(v) // 128 * 128 + 128 for v in pad["padded_to_256"]]       # README §4.3 npad
        assert list(pad["decoder_input_npad128"]) == decoder, pad
        masks = (case.get("dropout") or {}).get("draws", [])
        assert all(d["shape"][-1] * 32 == decoder[-1] or d["shape"][-1] * 16 == decoder[-1] for d in masks), masks


def _sha(t: torch.Tensor) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(t.detach().cpu().float().numpy()).tobytes()).digest()


def check(case: dict, got: dict, expected: dict) -> dict[str, float]:
    """Every stored key by its rule; returns {key: error (max|R-E|/rms for floats, max abs otherwise)}."""
    tol = case["tolerance"]
    given = {d["key"] for d in (case.get("dropout") or {}).get("draws", [])}
    report, failures = {}, []
    for key, want in expected.items():
        if key in given:                       # the dropout masks are inputs
            continue
        name, _, kind = key.rpartition(".") if key.endswith((".sha256", ".probe")) else (key, "", "")
        if name not in got:
            failures.append(f"{name}: not produced")
            continue
        value = torch.as_tensor(got[name])
        noise = name.startswith("noise.")
        if kind == "sha256":
            if not noise:                     # a digest can only say "exact"
                assert float(tol[name]["atol"]) == 0.0, f"{key}: a digest with a non-zero atol"
            same = _sha(value) == bytes(want.to(torch.uint8).tolist())
            report[key] = 0.0 if same else 1.0
            if not same and not noise:
                failures.append(f"{key}: digest differs")
            continue
        if kind == "probe":
            step = _probe_step(case, name)
            err = (value[..., ::step, ::step].double() - want.double()).abs().max().item()
            report[key] = err
            if err > (NOISE_PROBE_ATOL if noise else 0.0):
                failures.append(f"{key}: max|R-E| {err:.3e}")
            continue
        rule = tol.get(key)
        if rule is None:
            raise AssertionError(f"case.json has no tolerance for expected key {key}")
        if tuple(value.shape) != tuple(want.shape):
            failures.append(f"{key}: shape {tuple(value.shape)} != expected {tuple(want.shape)}")
            continue
        err = (value.double() - want.double()).abs().max().item()
        if "rtol_rms" in rule:
            rms = want.double().pow(2).mean().sqrt().item()
            report[key] = err / rms if rms else err
            ok = err <= float(rule["rtol_rms"]) * rms
            bound = f"{rule['rtol_rms']} * rms {rms:.3e}"
        else:
            report[key] = err
            ok = err <= float(rule["atol"])
            bound = f"atol {rule['atol']}"
        if not ok:
            failures.append(f"{key}: max|R-E| {err:.3e} > {bound}")
    if failures:
        raise AssertionError("; ".join(failures))
    return report
