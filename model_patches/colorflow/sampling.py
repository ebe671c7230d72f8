"""ColorFlow's official sampling schedules as ComfyUI SIGMAS and SAMPLERs.

* PixArt (sketch, shaded sketch): DPM-Solver++ 2M (midpoint, lower order at the end) on the `linspace` timesteps
  (999, 666, 333 for 3 steps): ComfyUI's own `dpmpp_2m` on these sigmas is the same solver.
* SD1.5 (grey pages): UniPC (bh2, order 2, corrector at every step but the first, lower order at the end) on the
  `leading` timesteps with offset 1 (751, 501, 251 for 3 steps), here as a ComfyUI sampler: ComfyUI's `uni_pc_bh2`
  ends at sigma 0.001 and picks its own order, so it does not reproduce the app.

Both official pipelines start from unit-variance noise at their first timestep, whatever it is (the VP latent is
the noise itself): `OfficialStartSampler` scales the noise that way (ComfyUI does it only when the first sigma is
the model's largest).
"""
from __future__ import annotations

import math

import torch

SCHEDULES = {"pixart": "linspace", "sd15": "leading"}


def official_timesteps(family: str, steps: int) -> list[int]:
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if SCHEDULES[family] == "linspace":
        points = torch.linspace(0, 999, steps + 1, dtype=torch.float64).round().flip(0)[:-1]
        return [int(t) for t in points]
    ratio = 1000 // (steps + 1)
    return [int(i * ratio) + 1 for i in range(steps, 0, -1)]


BETAS = {"pixart": "linear", "sd15": "scaled_linear"}     # beta 0.0001..0.02 (PixArt), 0.00085..0.012 (SD1.5)


def official_sigmas(family: str, steps: int) -> torch.Tensor:
    """ComfyUI sigmas at the official timesteps, then 0 (the official final step goes to the clean latent). The
    noise levels are the official scheduler's: its float32 betas and float32 cumulative product (ComfyUI's own
    table is float64; the two differ by 1e-5 at t = 333, which a 3-step run with guidance 4.5 amplifies 30-fold).
    ComfyUI maps each sigma back to the nearest training timestep, the official integer one."""
    n = 1000
    if BETAS[family] == "linear":
        betas = torch.linspace(0.0001, 0.02, n, dtype=torch.float32)
    else:
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, n, dtype=torch.float32) ** 2
    alphas = torch.cumprod(1.0 - betas, dim=0)
    sig = ((1 - alphas) / alphas) ** 0.5
    ts = official_timesteps(family, steps)
    return torch.cat([sig[ts], torch.zeros(1)]).to(torch.float32)


def _alpha_sigma(sigma: float) -> tuple[float, float, float]:
    """VP (alpha, sigma, lambda) of a ComfyUI sigma."""
    alpha = 1.0 / math.sqrt(sigma * sigma + 1.0)
    s = sigma * alpha
    lam = math.log(alpha) - math.log(s) if s > 0 else math.inf
    return alpha, s, lam


def _coefficients(h: float, order: int) -> tuple[float, float, list, list]:
    """(h_phi_1, B_h, R rows, b) of UniC/UniP bh2 with x0 prediction."""
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1 if math.isfinite(hh) else -1.0
    factorial = 1
    b_h = math.expm1(hh)
    b = []
    for i in range(1, order + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = (h_phi_k / hh if math.isfinite(hh) else 0.0) - 1 / factorial
    return h_phi_1, b_h, b


def sample_unipc(model, x, sigmas, extra_args=None, callback=None, disable=None, order: int = 2):
    """UniPC bh2 with x0 prediction, as the SD1.5 ColorFlow app runs it. `x` is ComfyUI's (x0 + sigma * eps)."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    sig = [float(s) for s in sigmas]
    steps = len(sig) - 1
    xv = x / math.sqrt(1 + sig[0] ** 2)           # the VP latent the official scheduler works on
    outputs: list = []                               # x0 predictions, newest last
    last_sample, this_order, lower = None, 1, 0
    for i in range(steps):
        denoised = model(xv * math.sqrt(1 + sig[i] ** 2), sig[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": xv * math.sqrt(1 + sig[i] ** 2), "i": i, "sigma": sig[i], "sigma_hat": sig[i],
                      "denoised": denoised})
        if i > 0 and last_sample is not None:                       # corrector (UniC) with the new output
            xv = _corrector(outputs, denoised, last_sample, sig, i, this_order)
        outputs = (outputs + [denoised])[-order:]
        this_order = min(order, steps - i, lower + 1)
        last_sample = xv
        xv = _predictor(outputs, xv, sig, i, this_order)
        lower = min(lower + 1, order)
    return xv * math.sqrt(1 + sig[-1] ** 2)


def _predictor(outputs, x, sig, i, order):
    m0 = outputs[-1]
    alpha_t, sigma_t, lam_t = _alpha_sigma(sig[i + 1])
    _, sigma_s0, lam_s0 = _alpha_sigma(sig[i])
    h = lam_t - lam_s0
    h_phi_1, b_h, _ = _coefficients(h, order)
    x_t = (sigma_t / sigma_s0) * x - alpha_t * h_phi_1 * m0
    if order >= 2:
        _, _, lam_s1 = _alpha_sigma(sig[i - 1])
        rk = (lam_s1 - lam_s0) / h
        d1 = (outputs[-2] - m0) / rk
        x_t = x_t - alpha_t * b_h * 0.5 * d1              # rho_p = 0.5 for order 2
    return x_t


def _corrector(outputs, model_t, last_sample, sig, i, order):
    m0 = outputs[-1]
    alpha_t, sigma_t, lam_t = _alpha_sigma(sig[i])
    _, sigma_s0, lam_s0 = _alpha_sigma(sig[i - 1])
    h = lam_t - lam_s0
    h_phi_1, b_h, b = _coefficients(h, order)
    x_t = (sigma_t / sigma_s0) * last_sample - alpha_t * h_phi_1 * m0
    if order == 1:
        rhos = [0.5]
        corr = 0
    else:
        _, _, lam_s1 = _alpha_sigma(sig[i - 2])
        rk = (lam_s1 - lam_s0) / h
        r = torch.tensor([[1.0, 1.0], [rk, 1.0]], dtype=torch.float64)
        rhos = torch.linalg.solve(r, torch.tensor(b, dtype=torch.float64)).tolist()
        corr = rhos[0] * (outputs[-2] - m0) / rk
    return x_t - alpha_t * b_h * (corr + rhos[-1] * (model_t - m0))


def official_start_sampler(sampler_function):
    """A ComfyUI SAMPLER that starts from the noise with unit variance in VP terms at the first sigma."""
    import comfy.samplers

    class OfficialStartSampler(comfy.samplers.KSAMPLER):
        def max_denoise(self, model_wrap, sigmas):
            return True

    return OfficialStartSampler(sampler_function)
