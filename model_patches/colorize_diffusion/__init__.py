"""ColorizeDiffusion on SD2.1 (v1, v1.5, v2) and XL (sdxl, xlv2): loading a checkpoint, the conditioning chain, the
UNet patches and the extra networks."""
