"""Native PyTorch ACTIVA (introspective VAE + ACTINN conditioner); see docs/models/activa.md.

The names below load on first use: the networks and the trainer need only torch, and so does
``ActivaGenerator`` until it fits or generates (its speed probe is the GPU check's torch-only path)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ACTINN": "model",
    "ActivaNet": "model",
    "Decoder": "model",
    "Encoder": "model",
    "ActivaGenerator": "plugin",
    "ActivaTrainer": "train",
    "TrainConfig": "schedule",
}
__all__ = ["ACTINN", "ActivaGenerator", "ActivaNet", "ActivaTrainer", "Decoder", "Encoder", "TrainConfig"]

if TYPE_CHECKING:
    from bench.generators.activa.model import ACTINN, ActivaNet, Decoder, Encoder
    from bench.generators.activa.plugin import ActivaGenerator
    from bench.generators.activa.schedule import TrainConfig
    from bench.generators.activa.train import ActivaTrainer


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
