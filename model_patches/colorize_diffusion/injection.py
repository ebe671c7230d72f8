"""Attention injection (the official "Attention injection" option): the reference's own features steer the
self-attention of every transformer block.

At each UNet evaluation from the start step on, the reference latent noised to the current timestep goes
through the patched UNet first (the write pass, with every condition of the real call and the sketch residuals
of the negated reference × sketch fidelity); each transformer block keeps its self-attention input. The real
call (the read pass) then attends over its own tokens and the kept ones, `attn1(n, [n; bank])`; on the
reference-unconditional rows that is blended with plain self-attention by the reference fidelity. Maths and
official quirks: ../shared/golden/README.md §10.2 (SD2.1) and ../shared/golden_xl/README.md §10 (XL).

Every family, the XL ones included, gets the same patch: every transformer block's self-attention is replaced, in
every evaluation, injected or not. For xlv2 that includes the decoder self-attentions that read the background
ReferenceNet's banks, so with the injection those banks are not read (the official hook replaces the reader too);
the background LoRA and the split cross-attention act as usual.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ...errors import ColorizerInputError
from ...preprocess.reference import resize_like_app
from .step_data import CURRENT_STEP, PASSES_KEY, STEP_KEY
from .unet_patches import WRAPPER_KEY as COLORIZER_WRAPPER, attn2_patch_key, transformer_blocks

INJECT_KEY = "colorize_diffusion_injection"     # transformer_options: {"mode": "write"|"read", "banks": {...}}
WRAPPER_KEY = "colorize_diffusion_injection"
DEFAULT_PASSES = ("positive", "negative")       # ComfyUI's own CFG: cond, then uncond
REFERENCE_UNCOND = "negative"
SKETCH_FIDELITY_MAX = 2.0                       # both official apps: "Injection fidelity (sketch)" 0–2


@dataclass(frozen=True)
class InjectionSettings:
    reference_fidelity: float = 0.5      # official "Injection fidelity (reference)", 0..1
    sketch_fidelity: float = 0.0         # official "Injection fidelity (sketch)", 0..2 (the apps' slider)
    start: float = 0.0                   # official "Injection start step", as a fraction 0..1 of the schedule

    def check(self) -> None:
        for name, v, hi in (("reference fidelity", self.reference_fidelity, 1.0),
                            ("sketch fidelity", self.sketch_fidelity, SKETCH_FIDELITY_MAX), ("start", self.start, 1.0)):
            if not 0.0 <= float(v) <= hi:
                raise ColorizerInputError(f"attention injection: {name} must lie in 0..{hi:g}, got {v}")


class SeededNoise:
    """One standard normal draw [1, 4, h, w] per injected evaluation, from a seeded CPU generator that starts
    again at every sampling run (so a re-queue gives the same picture)."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.reset()

    def __deepcopy__(self, memo):
        return self

    def reset(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, index: int, shape) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator)


class AttentionInjection:
    """The per-step work of the injection: the write pass and the read pass around one UNet evaluation."""

    def __init__(self, reference_latent: torch.Tensor, write_controls: list | None, settings: InjectionSettings,
                 alphas_cumprod: torch.Tensor, noise=None):
        settings.check()
        self.reference_latent = reference_latent          # [1, 4, h, w], VAE latent × the latent scale
        self.write_controls = write_controls              # 5 (XL: 4) × [1, C, h, w] × sketch fidelity; None: f_s = 0
        self.settings = settings
        self.alphas_cumprod = alphas_cumprod.double().cpu()
        self.noise = noise or SeededNoise(0)
        self.injected = 0                                 # injected evaluations so far (indexes the noise)

    def __deepcopy__(self, memo):
        return self

    def reset(self, *_patcher) -> None:
        """Called before every sampling run (ComfyUI's ON_PRE_RUN)."""
        self.injected = 0
        if hasattr(self.noise, "reset"):
            self.noise.reset()

    # ------------------------------------------------------------------------------------- the two passes
    def active(self, timesteps: torch.Tensor) -> bool:
        t = timesteps.reshape(-1)[:1].to(torch.float32)
        return bool((1 - t / 999 >= self.settings.start).item())

    def noised_reference(self, timesteps: torch.Tensor, rows: int, like: torch.Tensor) -> torch.Tensor:
        """q_sample(r, round(t), ε): one fresh ε for all rows of this evaluation."""
        t = int(round(float(timesteps.reshape(-1)[0])))
        a = self.alphas_cumprod[t]
        eps = self.noise(self.injected, tuple(self.reference_latent.shape)).to(like)
        self.injected += 1
        x = a.sqrt().item() * self.reference_latent.to(like) + (1 - a).sqrt().item() * eps
        return x.expand(rows, -1, -1, -1)

    def write_step(self, step, rows: int):
        """The step data of the write pass: the real call's, with the write-pass sketch residuals."""
        if self.write_controls is None:
            controls = None if step.controls is None else [torch.zeros_like(c) for c in step.controls]
        else:
            controls = [c.to(like.device, like.dtype).expand(rows, -1, -1, -1)
                        for c, like in zip(self.write_controls, step.controls)]
        return dataclasses.replace(step, controls=controls, _mask_cache=step._mask_cache)

    def diffusion_model_wrapper(self, executor, x, timesteps, context, y, control, transformer_options, **kwargs):
        if not self.active(timesteps):
            return executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        step = transformer_options.get(STEP_KEY)
        if step is None:
            raise ColorizerInputError("attention injection works on a MODEL patched by ColorizeDiffusion "
                                      "Conditioning: apply the injection after that node")
        banks = {}
        write = self.write_step(step, x.shape[0])
        write_options = {**transformer_options, STEP_KEY: write, INJECT_KEY: {"mode": "write", "banks": banks}}
        token = CURRENT_STEP.set(write)
        try:
            executor(self.noised_reference(timesteps, x.shape[0], x), timesteps, context, y, control,
                     write_options, **dict(kwargs))
        finally:
            CURRENT_STEP.reset(token)
        read_options = {**transformer_options, INJECT_KEY: {
            "mode": "read", "banks": banks, "blend_rows": self.blend_rows(transformer_options, x.shape[0])}}
        return executor(x, timesteps, context, y, control, read_options, **kwargs)

    def blend_rows(self, transformer_options, rows: int) -> torch.Tensor | None:
        """Rows of the reference-unconditional pass, whose attention is blended with plain self-attention."""
        if self.settings.reference_fidelity <= 1e-5:
            return None
        passes = transformer_options.get(PASSES_KEY, DEFAULT_PASSES)
        order = transformer_options.get("cond_or_uncond", [0])
        chunks = [i < len(passes) and passes[i] == REFERENCE_UNCOND for i in order]
        if not any(chunks):
            return None
        return torch.tensor(chunks).repeat_interleave(rows // len(order))

    # ------------------------------------------------------------------------------------- block patches
    def attn1_patch(self, n, context, value, extra_options):
        """Write: keep the block's self-attention input. Read: attend over [n; bank]."""
        state = extra_options.get(INJECT_KEY)
        if state is None:
            return n, context, value
        key = _block_key(extra_options)
        if state["mode"] == "write":
            state["banks"][key] = n
            return n, context, value
        bank = state["banks"][key]
        ctx = torch.cat([n, bank.to(n.dtype)], dim=1)
        return n, ctx, ctx

    def attn1_replace(self, q, k, v, extra_options):
        """attn1 on the projected q, k, v; in the read pass the blend rows also get plain self-attention."""
        from comfy.ldm.modules.attention import optimized_attention

        heads, precision = extra_options["n_heads"], extra_options.get("attn_precision")
        out = optimized_attention(q, k, v, heads, attn_precision=precision)
        state = extra_options.get(INJECT_KEY)
        if state is None or state["mode"] != "read" or state.get("blend_rows") is None:
            return out
        rows = state["blend_rows"].to(q.device)
        n = q.shape[1]
        plain = optimized_attention(q[rows], k[rows, :n], v[rows, :n], heads, attn_precision=precision)
        f = self.settings.reference_fidelity
        out = out.clone()
        out[rows] = f * plain + (1 - f) * out[rows]
        return out


def _block_key(extra_options) -> tuple:
    block = extra_options.get("block")
    return (block[0], block[1], extra_options.get("block_index", 0))


def apply_injection(model, injection: AttentionInjection):
    """A clone of a MODEL patched by ColorizeDiffusion, with attention injection added."""
    import comfy.patcher_extension


    wrappers = model.wrappers.get(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, {})
    if COLORIZER_WRAPPER not in wrappers:
        raise ColorizerInputError("attention injection needs a MODEL patched by ColorizeDiffusion Apply Sketch")
    m = model.clone()
    m.set_model_attn1_patch(injection.attn1_patch)
    # A replace patch on every block's attn1: the host then calls it (with attn1's own projections) instead of the
    # attn1 module, in every evaluation. For xlv2 this bypasses the ReferenceNet bank reader (BankSelfAttention) as
    # the official hook does: its banks have no effect while the injection is applied.
    for _, path, _ in transformer_blocks(m.get_model_object("diffusion_model")):
        m.set_model_attn1_replace(injection.attn1_replace, *attn2_patch_key(path))
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY,
                           injection.diffusion_model_wrapper)
    m.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_PRE_RUN, WRAPPER_KEY, injection.reset)
    return m


def write_controls(colorizer, hook_xr: torch.Tensor, sketch_fidelity: float) -> list | None:
    """The write pass's sketch residuals: the sketch encoder on the negated reference × sketch fidelity (official
    `control_encoder(-hook_xr) · f_s`); None when the fidelity is 0 (zero residuals)."""
    if sketch_fidelity == 0:
        return None
    device = colorizer.load_encoders()
    enc = colorizer.encoders.sketch_encoder
    with torch.no_grad():
        return [h * sketch_fidelity for h in enc((-hook_xr).to(device, enc.dtype))]


def build_injection(model, colorizer, vae, reference_image: torch.Tensor, height: int, width: int,
                    settings: InjectionSettings, seed: int) -> AttentionInjection:
    """Everything the injection needs, from the user's reference picture (IMAGE [1, H, W, 3], unpadded) at the
    generation size: its VAE latent and the write-pass sketch residuals."""

    settings.check()
    hook_xr = resize_like_app(reference_image, height, width)
    latent = vae.encode(((hook_xr + 1) / 2).movedim(1, -1))
    r = colorizer.latent_format.process_in(latent).float().cpu()
    return AttentionInjection(r, write_controls(colorizer, hook_xr, settings.sketch_fidelity), settings,
                              alphas_cumprod(model), SeededNoise(seed))


def alphas_cumprod(model) -> torch.Tensor:
    """ᾱ_t of the MODEL's discrete schedule, from ComfyUI's sigmas (σ² = (1 − ᾱ) / ᾱ)."""
    sigmas = model.get_model_object("model_sampling").sigmas.double()
    return 1 / (1 + sigmas ** 2)
