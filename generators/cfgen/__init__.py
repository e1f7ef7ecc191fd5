"""CFGen (Palma et al., ICLR 2025) in native PyTorch: see plugin.py and docs/models/cfgen.md."""

from bench.generators.cfgen.plugin import CfgenGenerator

__all__ = ["CfgenGenerator"]
