"""ColorFlow: its released folders, the ColorGuider patches of the PixArt-alpha and SD1.5 bases, the official
sampling, the conditioning latents and the guided super-resolution."""
