"""Dual classifier-free guidance (reference scale and sketch scale) as the official sampler combines it.

Flag = (ref > 1) + 10·(sketch > 1): none → c; ref → u_ref + g_r(c − u_ref); sketch → u_sk + g_s(c − u_sk);
both → ½[(u_ref + g_r(c − u_ref)) + (u_sk + g_s(c − u_sk))], all passes in one batched forward.
The official code combines raw outputs (ε or v); ComfyUI combines denoised predictions. The two agree
because the denoised prediction is affine in the raw output with the same coefficients for every pass
and the weights sum to 1.
"""
from __future__ import annotations

from ...errors import ColorizerInputError
from .latent_copy import LATENT_COPY_KEY
from .step_data import PASSES_KEY


def active_passes(reference_scale: float, sketch_scale: float) -> tuple[str, ...]:
    passes = ["positive"]
    if reference_scale > 1:
        passes.append("negative")
    if sketch_scale > 1:
        passes.append("sketch_negative")
    return tuple(passes)


def combine(outputs: dict, reference_scale: float, sketch_scale: float):
    c = outputs["positive"]
    ref = "negative" in outputs
    sk = "sketch_negative" in outputs
    if ref:
        ref_guided = outputs["negative"] + reference_scale * (c - outputs["negative"])
    if sk:
        sk_guided = outputs["sketch_negative"] + sketch_scale * (c - outputs["sketch_negative"])
    if ref and sk:
        return 0.5 * (ref_guided + sk_guided)
    if ref:
        return ref_guided
    if sk:
        return sk_guided
    return c


def make_guider_class():
    import comfy.samplers

    class ColorizeDiffusionGuider(comfy.samplers.CFGGuider):
        """GUIDER for SamplerCustomAdvanced: [positive, negative, sketch_negative] in one batch."""

        latent_copy = None
        _noise = None
        _first_sigma = None

        def set_conds(self, positive, negative, sketch_negative=None):
            self.latent_copy = next((options[LATENT_COPY_KEY] for _, options in positive
                                     if options.get(LATENT_COPY_KEY) is not None), None)
            conds = {"positive": positive, "negative": negative}
            if sketch_negative is not None:
                conds["sketch_negative"] = sketch_negative
            self.inner_set_conds(conds)

        def set_scales(self, reference_scale: float, sketch_scale: float):
            self.reference_scale = float(reference_scale)
            self.sketch_scale = float(sketch_scale)
            self.cfg = self.reference_scale

        def sample(self, noise, latent_image, sampler, sigmas, *args, **kwargs):
            self._noise, self._first_sigma = noise, float(sigmas[0])      # latent copy re-noises with these
            try:
                return super().sample(noise, latent_image, sampler, sigmas, *args, **kwargs)
            finally:
                self._noise = None

        def predict_noise(self, x, timestep, model_options={}, seed=None):
            if self.latent_copy is not None and self._noise is not None and \
                    float(timestep.flatten()[0]) < self._first_sigma:
                x = self.latent_copy.blend(x, timestep.flatten()[0], self._noise)
            passes = active_passes(self.reference_scale, self.sketch_scale)
            missing = [p for p in passes if self.conds.get(p) is None]
            if missing:
                raise ColorizerInputError(
                    f"sketch scale {self.sketch_scale:g} > 1 needs the sketch-unconditional pass of a "
                    "ColorizeDiffusion positive" if "sketch_negative" in missing
                    else f"missing conditioning: {', '.join(missing)}")
            options = {**model_options, "transformer_options": {
                **model_options.get("transformer_options", {}), PASSES_KEY: passes}}   # which row is which pass
            outs = comfy.samplers.calc_cond_batch(self.inner_model, [self.conds[p] for p in passes], x, timestep,
                                                  options)
            return combine(dict(zip(passes, outs)), self.reference_scale, self.sketch_scale)

    return ColorizeDiffusionGuider


_GUIDER_CLASS = None


def guider(model, positive, negative, sketch_negative, reference_scale: float, sketch_scale: float):
    global _GUIDER_CLASS
    if _GUIDER_CLASS is None:
        _GUIDER_CLASS = make_guider_class()
    g = _GUIDER_CLASS(model)
    g.set_conds(positive, negative, sketch_negative)
    g.set_scales(reference_scale, sketch_scale)
    return g
