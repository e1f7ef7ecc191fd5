"""A container generator that probes its sandbox (tests/test_sandbox.py): its fit tries to open a
network connection, write outside its work dir, write to the root filesystem and to its read-only
input, and change a file's owner; it records what happened in fit.json and goes on (or, with
``require_network``, fails the way a model that needs the network would). ``sleep_s`` keeps the
container running (signal tests), ``allocate_mb`` allocates and touches memory (limit tests).
``generate`` resamples training cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from bench.generators.container import ContainerGenerator


class Probe(ContainerGenerator):
    name: ClassVar[str] = "sandbox_probe"
    conditional: ClassVar[bool] = False
    output_scale: ClassVar[str] = "library-size-20000"
    description: ClassVar[str] = "test plugin: probes its container's sandbox"
    image_name: ClassVar[str] = "sandbox-probe"
    build_context: ClassVar[Path] = Path(__file__).resolve().parent / "image"
    build_files: ClassVar[tuple[str, ...]] = ("Dockerfile", "entry.py")
    process_requires: ClassVar[tuple[str, ...]] = ("anndata",)
    parameters: ClassVar[dict[str, Any]] = {
        **ContainerGenerator.parameters,
        "backend": "docker",
        "sleep_s": 0,
        "allocate_mb": 0,
        "require_network": False,
        "outside": "",
    }
    resources: ClassVar[dict[str, Any]] = {"cpus": 1, "gpus": 0, "mem_gb": 0.25, "time_min": 10}


class NetworkedProbe(Probe):
    """The same probe, declaring that it needs the network (shown by `bench list`)."""

    name: ClassVar[str] = "sandbox_probe_networked"
    sandbox: ClassVar[dict[str, Any]] = {"network": "bridge"}
