"""No stale results: the task key follows the generator's and the scoring's code, so editing either
stops the reuse of old results; the code versions are in the provenance."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

import bench.tasks
from bench import codeversion, registry
from bench.cli import main
from bench.codeversion import code_version, scoring_version
from bench.store import Store
from tests.conftest import make_counts

PLUGIN = textwrap.dedent(
    """\
    from bench.generators.baselines import NegativeBinomial


    class EditedNB(NegativeBinomial):
        name = "edited_nb"
    """
)


@pytest.fixture
def local_plugin(tmp_path, monkeypatch):
    """A generator in a module of its own (not installed: a script next to the user's data)."""
    src = tmp_path / "plugin_src"
    src.mkdir()
    name = f"edited_plugin_{tmp_path.name.replace('-', '_')}"
    path = src / f"{name}.py"
    path.write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(src))
    module = importlib.import_module(name)
    registry.register("generators", "edited_nb", module.EditedNB)
    yield path, module
    registry._EXTRA["generators"].pop("edited_nb")
    sys.modules.pop(name, None)


def test_editing_a_plugin_stops_the_reuse(local_plugin, tmp_path, capsys):
    path, module = local_plugin
    data = tmp_path / "cells.h5ad"
    make_counts(n_cells=120, n_genes=60, seed=3).write_h5ad(data)
    args = ["run", "--models", "edited_nb", "--dataset", str(data), "--label-key", "cell_type", "--metrics",
            "mean_corr", "--experiments", "main", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 0
    assert "3 task(s): 0 reused" in capsys.readouterr().out  # edited_nb and the two controls
    assert main(args) == 0
    assert "3 task(s): 3 reused" in capsys.readouterr().out
    before = code_version(module.EditedNB)
    path.write_text(PLUGIN + "    # a different model now\n    parameters = {'min_dispersion': 1e-2}\n")
    importlib.reload(module)
    registry.register("generators", "edited_nb", module.EditedNB)
    after = code_version(module.EditedNB)
    assert after.code_hash != before.code_hash
    assert main(args) == 0
    assert "3 task(s): 2 reused" in capsys.readouterr().out  # the controls' code did not change
    with Store(tmp_path / "run", create=False) as store:
        runs = store.runs()
    hashes = [r["provenance"]["code"]["generators"]["edited_nb"]["code_hash"] for r in runs]
    assert hashes == [before.code_hash, before.code_hash, after.code_hash]
    assert runs[-1]["provenance"]["code"]["generators"]["edited_nb"]["distribution"] is None
    assert runs[-1]["provenance"]["code"]["scoring"]


def test_a_subclass_changes_with_its_base():
    from bench.generators.baselines import NegativeBinomial

    class Sub(NegativeBinomial):
        pass

    own = code_version(NegativeBinomial)
    assert own.distribution == "scgenbench" and own.version
    files = codeversion._own_generator_files("bench.generators.baselines")
    assert set(files) == {"bench.generators.baselines"}
    # this test module plus the base class's files
    assert code_version(Sub).files == own.files + 1


def test_built_in_generators_hash_their_own_code():
    activa = codeversion._own_generator_files("bench.generators.activa.plugin")
    assert "bench.generators.activa/model.py" in activa
    # the interface it implements counts through the class's MRO: the whole bench.api.generator
    # package (the class, what a fit gets, the output check and helpers)
    files = codeversion.code_files(registry.get_generator("activa"))
    api = {f"bench.api.generator/{name}.py" for name in ("__init__", "fit", "output")}
    assert api <= set(files)
    assert not any("scgan" in name or "baselines" in name for name in activa)
    scgan = codeversion._own_generator_files("bench.generators.scgan.plugin")
    assert "bench.generators.scgan/Dockerfile" in scgan and "bench.generators.container" in scgan
    nb, act = code_version(registry.get_generator("nb")), code_version(registry.get_generator("activa"))
    assert (
        nb.code_hash != act.code_hash and nb.code_hash == code_version(registry.get_generator("nb")).code_hash
    )


def test_scgan_code_version_covers_every_file_of_the_container_package(tmp_path):
    """The container base is a package (images, process, base): scgan's code version hashes each of
    its files, so an edit to any of them gives scgan a new task key. (The docker runner is the
    harness's, bench/api/docker.py, like the sandbox policy it applies.)"""
    import bench.generators.container as container_pkg

    folder = Path(container_pkg.__file__).parent
    sources = sorted(folder.glob("*.py"))
    assert {p.stem for p in sources} >= {"__init__", "images", "process", "base"}
    from bench.generators.scgan import ScGAN

    files = codeversion.code_files(ScGAN)
    assert {p.resolve() for p in sources} <= {p.resolve() for p in files.values()}
    before = codeversion._hash(files)
    for source in sources:  # an edit of any one file (a copy, the source stays as it is)
        label = next(k for k, p in files.items() if p.resolve() == source.resolve())
        edited = tmp_path / f"{source.stem}.py"
        edited.write_text(source.read_text() + "\n# edited\n")
        assert codeversion._hash({**files, label: edited}) != before, source.name
    assert code_version(ScGAN).code_hash == before


def test_scoring_version_follows_the_scoring_code(tmp_path, monkeypatch):
    assert not hasattr(bench.tasks, "SCORING_VERSION")  # no hand-bumped number
    pkg = tmp_path / "scoring_src" / "fake_scoring"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("def score(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(pkg.parent))
    fake = importlib.import_module("fake_scoring")
    monkeypatch.setattr(codeversion, "SCORING_MODULES", ("fake_scoring",))
    first = scoring_version()
    (pkg / "__init__.py").write_text("def score(x):\n    return 2 * x\n")
    assert scoring_version() != first
    monkeypatch.undo()
    # a metric plugin from outside scgenbench counts with its own code
    from bench.api.metric import Metric

    metric = Metric(name="fake", func=fake.score)
    with_plugin = scoring_version({"fake": metric})
    assert with_plugin != scoring_version()
    (pkg / "__init__.py").write_text("def score(x):\n    return 3 * x\n")
    assert scoring_version({"fake": metric}) != with_plugin
    sys.modules.pop("fake_scoring", None)


def test_task_key_changes_with_code_and_scoring():
    from tests.store_fixtures import task

    a, b = task("nb", 0, code="aaa"), task("nb", 0, code="bbb")
    assert a.key != b.key and task("nb", 0, code="aaa").key == a.key
    c = task("nb", 0, code="aaa")
    c.key, c.scoring = "", "other"
    c.__post_init__()
    assert c.key != a.key


def test_the_metrics_figures_are_not_scoring_code(tmp_path, monkeypatch):
    """Editing a report figure (bench.metrics.figures, NOT_SCORING) reruns no task; editing the
    scoring code beside it does."""
    assert "bench.metrics/figures/" in codeversion.NOT_SCORING
    pkg = tmp_path / "scoring_src" / "fake_scoring2"
    (pkg / "figures").mkdir(parents=True)
    (pkg / "__init__.py").write_text("def score(x):\n    return x\n")
    (pkg / "figures" / "__init__.py").write_text("def draw(view, dataset):\n    return None\n")
    monkeypatch.syspath_prepend(str(pkg.parent))
    importlib.import_module("fake_scoring2")
    monkeypatch.setattr(codeversion, "SCORING_MODULES", ("fake_scoring2",))
    monkeypatch.setattr(codeversion, "NOT_SCORING", ("fake_scoring2/figures/",))
    first = scoring_version()
    (pkg / "figures" / "__init__.py").write_text("def draw(view, dataset):\n    return 'a note'\n")
    assert scoring_version() == first
    (pkg / "__init__.py").write_text("def score(x):\n    return 2 * x\n")
    assert scoring_version() != first
    sys.modules.pop("fake_scoring2", None)


def test_hashing_scgan_imports_no_tensorflow():
    """The import scan yields names such as ``scgan_tf.runtime.tf`` (``from .runtime import tf``);
    looking them up with find_spec imported their parent, TensorFlow with it: 6 s and TensorFlow's log
    lines in every run that planned scgan. Source files are found on disk, nothing is imported."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from bench.codeversion import code_version\n"
        "from bench.registry import get_generator\n"
        "v = code_version(get_generator('cscgan'))\n"
        "print(any(m == 'tensorflow' or m.startswith('tensorflow.') for m in sys.modules), len(v.code_hash))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "16"]
