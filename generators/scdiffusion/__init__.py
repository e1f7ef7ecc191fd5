"""scDiffusion (Luo et al., Bioinformatics 2024) as a native PyTorch generator: an autoencoder, a
latent diffusion model and a noisy-latent cell-type classifier that guides sampling.

Modules: networks (the three networks), diffusion (schedule, posterior, guided reverse step), train
(the three training stages, encoding, decoding, sampling on tensors), settings (parameters and
profiles), speed (the GPU check's torch-only probe), progress (the training bar), plugin (the
Generator). docs/models/scdiffusion.md describes it and lists every divergence from the released code.
"""

from bench.generators.scdiffusion.plugin import ScDiffusion

__all__ = ["ScDiffusion"]
