"""The two tolerance rules of the golden sets."""
from __future__ import annotations

import torch


def check_model_case(case: dict, got: dict, expected: dict, platform_atol: dict | None = None) -> dict[str, float]:
    """Model cases: max|R - E| <= rtol_rms * rms(E) + atol for every expected float tensor.

    `platform_atol` ({key: bound}) widens atol for keys whose recorded value depends on the recording machine's
    float32 maths library beyond the case's tolerance (its runner says why and computes the bound).
    Returns {key: max|R - E| / rms(E)}; raises AssertionError listing every key that fails.
    """
    tol = case["tolerance"]
    rtol_rms, case_atol = float(tol["rtol_rms"]), float(tol.get("atol", 1e-6))
    report, failures = {}, []
    for key, want in expected.items():
        atol = max(case_atol, (platform_atol or {}).get(key, 0.0))
        if key not in got:
            failures.append(f"{key}: not produced")
            continue
        r = got[key].detach().to("cpu")
        if not want.is_floating_point():
            if not torch.equal(r.to(want.dtype), want):
                failures.append(f"{key}: integer tensor differs ({r.tolist()} vs {want.tolist()})")
            report[key] = 0.0
            continue
        r = r.to(torch.float64)
        e = want.to(torch.float64)
        if tuple(r.shape) != tuple(e.shape):
            failures.append(f"{key}: shape {tuple(r.shape)} != expected {tuple(e.shape)}")
            continue
        err = (r - e).abs().max().item() if e.numel() else 0.0
        rms = e.pow(2).mean().sqrt().item() if e.numel() else 0.0
        report[key] = err / rms if rms > 0 else err
        if not err <= rtol_rms * rms + atol:
            failures.append(f"{key}: max|R-E| = {err:.3e} > {rtol_rms:g}*rms {rms:.3e} + {atol:g}")
    if failures:
        raise AssertionError("; ".join(failures))
    return report


def check_preprocess_case(case: dict, got: dict, expected: dict, inputs: dict | None = None) -> dict[str, float]:
    """Preprocess cases: |got - want| <= atol + rtol*|want| for all but max_bad_frac of the elements. Besides every
    expected key, the intermediates stored with the inputs (the tensor handed to the network or to proceed()) are
    compared where the case gives them a tolerance and the runner produced them.

    Returns {key: max|got - want|}; raises AssertionError listing every key that fails.
    """
    report, failures = {}, []
    stages = {k: v for k, v in (inputs or {}).items() if k in got and k in case["tolerance"]}
    for key, want in {**stages, **expected}.items():
        rule = case["tolerance"].get(key)
        if rule is None:
            raise AssertionError(f"case.json has no tolerance for expected key {key}")
        if key not in got:
            failures.append(f"{key}: not produced")
            continue
        g = torch.as_tensor(got[key]).detach().to("cpu", torch.float64)
        w = want.to(torch.float64)
        if tuple(g.shape) != tuple(w.shape):
            failures.append(f"{key}: shape {tuple(g.shape)} != expected {tuple(w.shape)}")
            continue
        diff = (g - w).abs()
        nan_both = torch.isnan(g) & torch.isnan(w)
        bad = ~((diff <= float(rule["atol"]) + float(rule["rtol"]) * w.abs()) | nan_both)
        frac = bad.float().mean().item() if bad.numel() else 0.0
        finite = diff[~nan_both]
        report[key] = finite.max().item() if finite.numel() else 0.0
        if frac > float(rule.get("max_bad_frac", 0.0)):
            failures.append(f"{key}: {frac:.2e} of elements out of tolerance "
                            f"(max diff {report[key]:.3e}, atol {rule['atol']}, rtol {rule['rtol']})")
    if failures:
        raise AssertionError("; ".join(failures))
    return report
