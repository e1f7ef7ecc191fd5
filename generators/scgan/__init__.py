"""scGAN / cscGAN (TensorFlow 2 port, runs in Docker or as a local process) and the adapter for the
original image."""

from bench.generators.scgan.original import ScGANOriginal
from bench.generators.scgan.plugin import CscGAN, ScGAN

__all__ = ["CscGAN", "ScGAN", "ScGANOriginal"]
