"""Native PyTorch ACTIVA (introspective VAE + ACTINN conditioner); see docs/models/activa.md."""

from bench.generators.activa.model import ACTINN, ActivaNet, Decoder, Encoder
from bench.generators.activa.plugin import ActivaGenerator
from bench.generators.activa.train import ActivaTrainer, TrainConfig

__all__ = ["ACTINN", "ActivaGenerator", "ActivaNet", "ActivaTrainer", "Decoder", "Encoder", "TrainConfig"]
