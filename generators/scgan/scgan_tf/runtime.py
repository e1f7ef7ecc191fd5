"""Where and how TensorFlow runs the port: the device the task asked for, XLA with its fallback to
a plain tf.function, a mistake the user can fix (user_error.json, exit 2), and the log."""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf


def log(msg: str) -> None:
    """One line to the log (stdout, flushed: the harness streams it)."""
    print(msg, flush=True)


USER_ERROR_FILE = "user_error.json"  # a mistake the user can fix: the harness reports it (exit 2)
USER_ERROR_EXIT = 2


class UserMistake(Exception):
    """A run the user asked for that cannot be done here (e.g. ``cuda`` where TensorFlow sees no
    GPU): ``main`` writes ``user_error.json`` ({"message", "fix"}) and exits 2; the harness turns it
    into its one-line UserError."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message, self.fix = message, fix


def configure_device(device: str) -> dict[str, Any]:
    """Make TensorFlow use what the task asked for and return what it uses: ``device`` ("cuda" or
    "cpu"), the GPUs' names, whether this TensorFlow is built with CUDA. On ``cuda``: every visible
    GPU (the harness passes only the task's) with memory growth on; no GPU is a UserMistake, never a
    silent CPU run. On ``cpu``: GPUs hidden from TensorFlow."""
    gpus = tf.config.list_physical_devices("GPU")
    info: dict[str, Any] = {
        "device": "cpu",
        "gpus": [],
        "tensorflow_cuda": bool(tf.test.is_built_with_cuda()),
    }
    if device == "cuda":
        if not gpus:
            built = "is built with CUDA" if info["tensorflow_cuda"] else "is a CPU-only build"
            raise UserMistake(
                f"device 'cuda' was asked for but TensorFlow {tf.__version__} in this image sees no GPU "
                f"(it {built}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})",
                "run on a machine with an NVIDIA GPU and the NVIDIA container toolkit (the GPU image "
                "variant is built for --device cuda), or use --device cpu",
            )
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)  # share the GPU; allocate as needed
        info["device"] = "cuda"
        info["gpus"] = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        return info
    if gpus:
        tf.config.set_visible_devices([], "GPU")
    return info


# errors with which XLA refuses to compile a function (missing kernels, ptxas/libdevice on a GPU)
_XLA_ERRORS = (
    tf.errors.InvalidArgumentError,
    tf.errors.UnimplementedError,
    tf.errors.InternalError,
    tf.errors.UnknownError,
    tf.errors.NotFoundError,
)


class XlaFunction:
    """``tf.function(fn, jit_compile=jit)``; when the first call cannot be compiled by XLA, a
    warning is logged and ``fn`` runs (now and from then on) as a plain tf.function. Only the first
    call falls back: later errors are real errors. ``fallback`` holds the reason, if any."""

    def __init__(self, fn, jit: bool, what: str):
        self.fn, self.jit, self.what = fn, bool(jit), what
        self.compiled = tf.function(fn, jit_compile=self.jit)
        self.fallback: str | None = None
        self._first = True

    def __call__(self, *args):
        if not self._first:
            return self.compiled(*args)
        self._first = False
        try:
            return self.compiled(*args)
        except _XLA_ERRORS as exc:
            if not self.jit:
                raise
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            log(f"warning: XLA cannot compile the {self.what} ({reason}); continuing without XLA")
            self.jit, self.fallback = False, reason
            self.compiled = tf.function(self.fn, jit_compile=False)
            return self.compiled(*args)
