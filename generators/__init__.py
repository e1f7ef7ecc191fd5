"""The built-in generators: the container backend and one module or folder per model.

They register through the ``bench.generators`` entry points (pyproject.toml), exactly as a
third-party plugin does, and import only :mod:`bench.api` from the core. The interface they
implement (``Generator``, ``FitContext``, ``FitResult``, ``validate_output``) is in
:mod:`bench.api`."""
