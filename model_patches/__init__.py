"""Loading ColorizeDiffusion checkpoints, its extra networks, and the patches applied to the host UNet."""
