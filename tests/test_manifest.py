"""Generators added with a manifest (scgenbench.toml; generators/container/manifest.py): every field
wrong once ends with one line naming the file and the field (exit 2 from the CLI); `bench plugins
add/remove/list`; --models PATH and [models.NAME] manifest = PATH; the manifest in the code version;
the plain MatrixMarket + CSV format and the checks of what a container wrote. The docker tests (marked
docker; FAIL when BENCH_REQUIRE_DOCKER=1) run the R example end to end and a contract-breaking one."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from bench.api import TaskFailed, UserError
from bench.generators.container import manifest_generator, parse_manifest
from bench.generators.container.base import read_fit_json
from bench.generators.container.manifest import from_images
from bench.generators.container.plainio import read_plain, write_plain

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "r-nb"
DIGEST = "sha256:" + "ab" * 32

VALID = {
    "name": "toy",
    "description": "a toy",
    "citation": "Doe 2026",
    "code_url": "https://example.org",
    "conditional": True,
    "output_scale": "counts",
    "parameters": {
        "alpha": {"type": "float", "default": 0.5, "bounds": "(0, 1]", "description": "a number"},
        "mode": {"type": "string", "default": "a", "choices": ["a", "b"]},
        "steps": {"type": "int", "default": 10, "bounds": "[1, inf) integer"},
    },
    "profiles": {"quick": {"steps": 2}},
    "commands": {"fit": ["Rscript", "/m.R", "fit", "/work"], "generate": "Rscript /m.R generate /work"},
    "resources": {"memory": "2g", "cpus": 1, "gpu": False, "time_min": 5},
    "image": {"dockerfile": "Dockerfile"},
}


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


def dump(data: dict) -> str:
    """A small TOML writer: scalars first, then [table] and [table.sub] sections."""
    lines = [f"{k} = {_toml(v)}" for k, v in data.items() if not isinstance(v, dict)]

    def section(prefix: str, table: dict) -> None:
        lines.append(f"\n[{prefix}]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in table.items() if not isinstance(v, dict))
        for k, v in table.items():
            if isinstance(v, dict):
                section(f"{prefix}.{k}", v)

    for k, v in data.items():
        if isinstance(v, dict):
            section(k, v)
    return "\n".join(lines) + "\n"


def write_manifest(folder: Path, data: dict | str, dockerfile: str = "FROM scratch\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile)
    (folder / "scgenbench.toml").write_text(data if isinstance(data, str) else dump(data))
    return folder


def _set(data: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for key in path:
        data = data.setdefault(key, {})
    if value is _DEL:
        data.pop(last, None)
    else:
        data[last] = value


_DEL = object()

# (the field the error must name, the mutation: dotted key -> value, _DEL removes it)
WRONG = [
    ("name", {"name": _DEL}),
    ("name", {"name": "Not A Name"}),
    ("description", {"description": 5}),
    ("citation", {"citation": ["Doe"]}),
    ("code_url", {"code_url": 1}),
    ("conditional", {"conditional": "yes"}),
    ("conditional", {"conditional": _DEL}),
    ("output_scale", {"output_scale": "tpm"}),
    ("colour", {"colour": "red"}),
    ("parameters.alpha.type", {"parameters.alpha.type": "double"}),
    ("parameters.alpha.default", {"parameters.alpha.default": "high"}),
    ("parameters.alpha.default", {"parameters.alpha.default": _DEL}),
    ("parameters.alpha.default", {"parameters.alpha.default": 2.0}),  # outside its bounds
    ("parameters.alpha.bounds", {"parameters.alpha.bounds": "0 to 1"}),
    ("parameters.alpha.description", {"parameters.alpha.description": 3}),
    ("parameters.alpha.unit", {"parameters.alpha.unit": "m"}),
    ("parameters.mode.choices", {"parameters.mode.choices": "a"}),
    ("parameters.mode.default", {"parameters.mode.default": "c"}),  # not one of the choices
    ("parameters.steps.default", {"parameters.steps.default": 1.5}),
    ("parameters.mem_limit", {"parameters.mem_limit": {"type": "string", "default": "1g"}}),
    ("parameters.beta", {"parameters.beta": 3}),
    ("profiles.fast", {"profiles.fast": {"steps": 1}}),
    ("profiles.quick.gamma", {"profiles.quick.gamma": 1}),
    ("profiles.quick.steps", {"profiles.quick.steps": 0}),
    ("profiles.quick.mode", {"profiles.quick.mode": "z"}),
    ("commands", {"commands": _DEL}),
    ("commands.fit", {"commands.fit": []}),
    ("commands.generate", {"commands.generate": _DEL}),
    ("commands.generate", {"commands.generate": ["ok", 3]}),
    ("commands.train", {"commands.train": ["x"]}),
    ("resources.memory", {"resources.memory": "lots"}),
    ("resources.cpus", {"resources.cpus": -1}),
    ("resources.gpu", {"resources.gpu": "yes"}),
    ("resources.time_min", {"resources.time_min": 0}),
    ("resources.disk", {"resources.disk": "1g"}),
    ("image", {"image": _DEL}),
    ("image", {"image.ref": "r/x@" + DIGEST}),  # both a Dockerfile and a ref
    ("image", {"image.dockerfile": _DEL}),
    ("image.ref", {"image.dockerfile": _DEL, "image.ref": "r/x:latest"}),
    ("image.dockerfile", {"image.dockerfile": "Nope"}),
    ("image.dockerfile", {"image.dockerfile": "../Dockerfile"}),
    ("image.context", {"image.context": "nowhere"}),
    ("image.build_args", {"image.build_args": {"A": 1}}),
    ("image.shell", {"image.shell": "bash"}),
    ("sandbox", {"sandbox.wifi": True}),
]


def test_the_valid_manifest_parses(tmp_path):
    m = parse_manifest(write_manifest(tmp_path / "m", VALID))
    assert (m.name, m.conditional, m.output_scale) == ("toy", True, "counts")
    assert m.parameters == {"alpha": 0.5, "mode": "a", "steps": 10}
    assert m.bounds == {"alpha": "(0, 1]", "steps": "[1, inf) integer"} and m.choices == {"mode": ("a", "b")}
    assert m.commands["generate"] == ["Rscript", "/m.R", "generate", "/work"]  # a string is split
    assert m.resources == {"mem_gb": 2.0, "cpus": 1, "gpus": 0, "time_min": 5}
    assert m.image["dockerfile"] == "Dockerfile" and m.image["context"] == (tmp_path / "m").resolve()
    ref = copy.deepcopy(VALID)
    ref["image"] = {"ref": "registry.example/lab/model@" + DIGEST}
    assert parse_manifest(write_manifest(tmp_path / "r", ref)).image == {"ref": ref["image"]["ref"]}


def test_the_r_example_parses():
    m = parse_manifest(EXAMPLE)
    assert m.name == "r-nb" and m.conditional and m.output_scale == "counts"
    assert m.choices == {"library_size": ("independent", "sampled")}
    assert from_images((EXAMPLE / "Dockerfile").read_text(), {}) == ["scgenbench/seurat-base:bookworm"]


@pytest.mark.parametrize(("field", "change"), WRONG, ids=[f"{f}-{i}" for i, (f, _) in enumerate(WRONG)])
def test_each_wrong_field_names_the_file_and_the_field(tmp_path, field, change):
    data = copy.deepcopy(VALID)
    for key, value in change.items():
        _set(data, key, value)
    folder = write_manifest(tmp_path / "m", data)
    with pytest.raises(UserError) as err:
        parse_manifest(folder)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{folder.resolve() / 'scgenbench.toml'}: {field}"), text


def test_a_broken_manifest_is_one_line_and_exit_2_from_the_cli(tmp_path, capsys, monkeypatch):
    from bench.cli import main

    monkeypatch.setenv("BENCH_CONFIG_DIR", str(tmp_path / "cfg"))
    data = copy.deepcopy(VALID)
    data["resources"]["cpus"] = "many"
    folder = write_manifest(tmp_path / "m", data)
    assert main(["plugins", "add", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "scgenbench.toml: resources.cpus: must be a positive number" in err
    write_manifest(tmp_path / "t", "name = [\n")
    assert main(["plugins", "add", str(tmp_path / "t")]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["plugins", "add", str(tmp_path / "none")]) == 2
    assert "no scgenbench.toml there" in capsys.readouterr().err


def test_plugins_add_list_remove(tmp_path, capsys, monkeypatch):
    from bench.api import userconfig
    from bench.cli import main
    from bench.registry import available, broken

    monkeypatch.setenv("BENCH_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("BENCH_MANIFESTS", raising=False)
    folder = write_manifest(tmp_path / "m", VALID)
    assert main(["plugins", "add", str(folder)]) == 0
    assert userconfig.get("manifests", "toy") == str(folder.resolve())
    assert "toy" in available("generators") and available("generators")["toy"].manifest.name == "toy"
    capsys.readouterr()
    assert main(["plugins", "list"]) == 0
    assert "toy" in capsys.readouterr().out
    # a registered manifest that breaks later is listed apart, with the reason
    (folder / "scgenbench.toml").write_text(dump({**VALID, "output_scale": "tpm"}))
    assert "toy" not in available("generators") and "output_scale" in broken("generators")["toy"].reason
    with pytest.raises(UserError, match="output_scale"):
        from bench.registry import get_generator

        get_generator("toy")
    assert main(["plugins", "remove", "toy"]) == 0
    assert "toy" not in available("generators") and "toy" not in broken("generators")
    assert main(["plugins", "remove", "toy"]) == 2
    # a built-in's name is refused
    assert main(["plugins", "add", str(write_manifest(tmp_path / "n", {**VALID, "name": "nb"}))]) == 2
    assert "already named 'nb'" in capsys.readouterr().err


def test_parameters_are_checked_like_built_in_options(tmp_path):
    cls = manifest_generator(write_manifest(tmp_path / "m", VALID))
    assert cls.params_for_profile("quick")["steps"] == 2
    cls(alpha=1, mode="b", steps=3)  # an integer passes for a float
    with pytest.raises(UserError, match=r"alpha = 2 is not a number in \(0, 1\]"):
        cls(alpha=2)
    with pytest.raises(UserError, match="mode = 'c' is not supported"):
        cls(mode="c")
    with pytest.raises(UserError, match="unknown parameter"):
        cls(beta=1)
    with pytest.raises(UserError, match="cannot read memory limit"):
        cls(mem_limit="lots")


def test_models_by_path_and_the_models_table(tmp_path, monkeypatch):
    from bench.config import build_spec

    monkeypatch.setenv("BENCH_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("BENCH_MANIFESTS", "")
    folder = write_manifest(tmp_path / "m", VALID)
    spec = build_spec(None, models=["nb", str(folder)], control=False)
    assert spec.models == ["nb", "toy"] and str(folder.resolve()) in os.environ["BENCH_MANIFESTS"]
    spec = build_spec({"models": {"toy": {"manifest": str(folder), "steps": 3}}}, control=False)
    assert spec.models == ["toy"] and spec.model_params == {"toy": {"steps": 3}}
    with pytest.raises(UserError, match=r"\[models.other\] manifest = .* names a generator 'toy'"):
        build_spec({"models": {"other": {"manifest": str(folder)}}})
    with pytest.raises(UserError, match="taken by an installed generator"):
        build_spec(None, models=[str(write_manifest(tmp_path / "n", {**VALID, "name": "nb"}))])


def test_editing_the_manifest_or_its_files_changes_the_code_version(tmp_path):
    from bench.codeversion import code_version

    folder = write_manifest(tmp_path / "m", VALID)
    (folder / "m.R").write_text("cat('v1')\n")
    v1 = code_version(manifest_generator(folder)).code_hash
    assert code_version(manifest_generator(folder)).code_hash == v1  # stable
    (folder / "m.R").write_text("cat('v2')\n")
    v2 = code_version(manifest_generator(folder)).code_hash
    (folder / "scgenbench.toml").write_text(dump({**VALID, "description": "edited"}))
    v3 = code_version(manifest_generator(folder)).code_hash
    assert len({v1, v2, v3}) == 3


def test_from_images_resolves_args_and_skips_stages():
    text = "ARG BASE=a/b:1\nFROM ${BASE} AS build\nRUN x\nFROM build\nFROM --platform=linux/amd64 c/d@sha256:00\n"
    assert from_images(text, {}) == ["a/b:1", "c/d@sha256:00"]
    assert from_images(text, {"BASE": "e:2"})[0] == "e:2"
    assert from_images("FROM scratch\n", {}) == []


# -- the I/O contract ------------------------------------------------------------------------------------
GENES = ["g1", "g2", "g3"]


def test_plain_format_round_trip(tmp_path):
    X = sp.csr_matrix(np.array([[0, 2, 1], [5, 0, 0]], dtype=np.float32))
    write_plain(tmp_path / "p", X, ["c1", "c2"], GENES, ["T", "B"])
    assert (tmp_path / "p" / "counts.mtx").read_text().startswith("%%MatrixMarket matrix coordinate integer")
    out = read_plain(tmp_path / "p", GENES, "cell_type", who="toy", need_labels=True)
    assert np.array_equal(out.X.toarray(), X.toarray()) and list(out.var_names) == GENES
    assert list(out.obs["cell_type"]) == ["T", "B"] and list(out.obs_names) == ["c1", "c2"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "counts.mtx").unlink(), "generated/counts.mtx is missing"),
        (lambda p: (p / "counts.mtx").write_text("not a matrix\n"), "generated/counts.mtx is not a readable"),
        (lambda p: (p / "obs.csv").write_text("cell,label\nc1,T\n"), "generated/obs.csv has 1 rows"),
        (
            lambda p: (p / "obs.csv").write_text("cell,type\nc1,T\nc2,B\n"),
            "generated/obs.csv has no column 'label'",
        ),
        (lambda p: (p / "var.csv").write_text("gene\ng1\ng3\ng2\n"), "generated/var.csv: gene 1 is 'g3'"),
        (lambda p: (p / "obs.csv").unlink(), "generated/obs.csv is missing"),
    ],
)
def test_plain_output_that_breaks_the_contract_names_file_and_field(tmp_path, damage, message):
    folder = tmp_path / "generated"
    write_plain(folder, sp.csr_matrix(np.ones((2, 3))), ["c1", "c2"], GENES, ["T", "B"])
    damage(folder)
    with pytest.raises(TaskFailed, match=message):
        read_plain(folder, GENES, "cell_type", who="toy", need_labels=True)


def test_plain_output_with_the_wrong_number_of_genes(tmp_path):
    folder = tmp_path / "generated"
    write_plain(folder, sp.csr_matrix(np.ones((2, 2))), ["c1", "c2"], GENES[:2], ["T", "B"])
    with pytest.raises(TaskFailed, match="generated/counts.mtx has 2 columns .* the training data has 3"):
        read_plain(folder, GENES, "cell_type", who="toy", need_labels=True)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (None, "without writing fit.json"),
        ("{", "fit.json is not valid JSON"),
        ("[1]", "fit.json must hold a JSON object"),
        ({"steps": 3}, "fit.json: train_seconds must be a number >= 0, got None"),
        ({"train_seconds": "1"}, "fit.json: train_seconds must be a number"),
        ({"train_seconds": 1, "steps": -2}, "fit.json: steps must be an integer"),
        ({"train_seconds": 1, "cells_seen": 1.5}, "fit.json: cells_seen must be an integer"),
        ({"train_seconds": 1, "history": {"loss": ["x"]}}, "fit.json: history must be an object of lists"),
    ],
)
def test_fit_json_is_checked_field_by_field(tmp_path, record, message):
    if record is not None:
        (tmp_path / "fit.json").write_text(record if isinstance(record, str) else json.dumps(record))
    with pytest.raises(TaskFailed, match=message):
        read_fit_json(tmp_path, "toy")
    (tmp_path / "fit.json").write_text(json.dumps({"train_seconds": 1.5, "steps": None, "extra": 1}))
    assert read_fit_json(tmp_path, "toy")["train_seconds"] == 1.5


# -- docker ------------------------------------------------------------------------------------------------
@pytest.fixture
def docker_engine():
    from bench.generators.container import docker_client

    client = docker_client()
    if client is None:
        if os.environ.get("BENCH_REQUIRE_DOCKER") == "1":
            pytest.fail("a Docker engine is required (BENCH_REQUIRE_DOCKER=1) but none answers")
        pytest.skip("no Docker engine answers")
    return client


def _leftovers(client, image: str) -> int:
    """Containers of ``image`` that this test process started and did not remove."""
    from bench.api.sandbox import LABEL_OWNER, owner_label

    mine = {"ancestor": image, "label": [f"{LABEL_OWNER}={owner_label()}"]}
    return len(client.containers.list(all=True, filters=mine))


@pytest.mark.docker
def test_the_r_example_end_to_end(docker_engine, tmp_path):
    """r-nb through the manifest path: image built from its Dockerfile, fit and generate in R in the
    sandbox, the plain output converted and valid, per label and unconditional."""
    from bench.api.generator import validate_output
    from tests.conftest import fit_generator, make_counts

    cls = manifest_generator(EXAMPLE)
    train = make_counts(150, 40, 3)
    labels = sorted(set(train.obs["cell_type"].astype(str)))
    gen = cls(**cls.params_for_profile("quick"))
    fit = fit_generator(gen, train, work_dir=tmp_path)
    image = docker_engine.images.get(fit.extra["image"])
    assert (
        fit.extra["image"].startswith("scgenbench/manifest-r-nb:")
        and image.attrs["Config"]["User"] == "10001:10001"
    )
    assert (
        fit.extra["backend"] == "docker" and fit.train_seconds >= 0 and "R version" in fit.extra["r_version"]
    )
    for field in ("counts.mtx", "obs.csv", "var.csv"):
        assert (tmp_path / "train" / field).is_file()
    request = {labels[0]: 7, labels[2]: 4}
    out = gen.generate(request, seed=1)
    validate_output(cls, out, var_names=list(train.var_names), label_key="cell_type", known_labels=labels,
                    requested=request)  # fmt: skip
    assert not (tmp_path / "generated").exists()  # converted, then removed from the work dir
    again = gen.generate(request, seed=1)
    assert np.array_equal(out.X.toarray(), again.X.toarray())  # seeded in R
    free = gen.generate(60, seed=2)
    assert free.n_obs == 60 and set(free.obs["cell_type"]) <= set(labels)
    # the per-type means come through: type k over-expresses its own gene block (make_counts)
    X = np.asarray(free.X.todense())
    assert (X.sum(1) > 0).all()
    assert _leftovers(docker_engine, fit.extra["image"]) == 0


BAD_FIT = "mkdir -p model && echo '{\"steps\": 1}' > fit.json"
BAD_GENERATE = (
    "mkdir -p generated && printf '%%%%MatrixMarket matrix coordinate integer general\\n2 2 1\\n1 1 5\\n' "
    "> generated/counts.mtx && printf 'cell,label\\na,t0\\nb,t0\\n' > generated/obs.csv"
)


@pytest.mark.docker
def test_output_that_breaks_the_contract_ends_the_task_with_one_line(docker_engine, tmp_path):
    from tests.conftest import fit_generator, make_counts

    data = copy.deepcopy(VALID)
    data["parameters"] = {}
    data["profiles"] = {}
    data["commands"] = {"fit": ["sh", "-c", BAD_FIT], "generate": ["sh", "-c", BAD_GENERATE]}
    folder = write_manifest(tmp_path / "bad", data, dockerfile="FROM scgenbench/seurat-base:bookworm\n")
    cls = manifest_generator(folder)
    gen = cls()
    with pytest.raises(TaskFailed, match="toy: fit.json: train_seconds must be a number >= 0, got None"):
        fit_generator(gen, make_counts(40, 5, 2), work_dir=tmp_path / "w")
    data["commands"]["fit"] = ["sh", "-c", BAD_FIT.replace('"steps"', '"train_seconds": 0.1, "steps"')]
    cls = manifest_generator(
        write_manifest(folder, data, dockerfile="FROM scgenbench/seurat-base:bookworm\n")
    )
    gen = cls()
    fit_generator(gen, make_counts(40, 5, 2), work_dir=tmp_path / "w2")
    try:
        with pytest.raises(
            TaskFailed, match=r"toy: generated/counts.mtx has 2 columns \(genes\), the training data has 5"
        ):
            gen.generate({"t0": 2}, seed=0)
    finally:  # the test's own image
        label = f"org.scgenbench.manifest={folder.resolve() / 'scgenbench.toml'}"
        for image in docker_engine.images.list(filters={"label": label}):
            for tag in image.tags:
                docker_engine.images.remove(tag, noprune=False)


def test_without_the_loader_entry_point_a_registration_is_broken_not_lost(tmp_path, monkeypatch):
    import bench.registry as R

    monkeypatch.setenv("BENCH_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("BENCH_MANIFESTS", raising=False)
    from bench.api import userconfig

    userconfig.record("manifests", "toy", str(write_manifest(tmp_path / "m", VALID)))
    monkeypatch.setattr(R, "_manifest_loader", lambda: None)
    assert "toy" not in R.available("generators")
    assert "reinstall scgenbench" in R.broken("generators")["toy"].reason


@pytest.mark.docker
def test_bench_plugins_add_then_run_nb_and_r_nb(docker_engine, tmp_path):
    """The user's path: `bench plugins add DIR`, `bench run --models nb,r-nb` fills both rows;
    the same command again reuses both; an edit of the R script reruns r-nb only."""
    import re
    import shutil
    import subprocess
    import sys

    from tests.conftest import make_counts

    example = tmp_path / "r-nb"
    shutil.copytree(EXAMPLE, example)
    env = {
        **os.environ,
        "BENCH_CONFIG_DIR": str(tmp_path / "cfg"),
        "BENCH_MANIFESTS": "",
        "OMP_NUM_THREADS": "1",
    }
    bench = [sys.executable, "-m", "bench.cli"]
    out = subprocess.run([*bench, "plugins", "add", str(example)], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "registered generator 'r-nb'" in out.stdout, out.stderr
    make_counts(n_cells=150, n_genes=80, seed=4).write_h5ad(tmp_path / "d.h5ad")
    run = [*bench, "run", "--models", "nb,r-nb", "--dataset", str(tmp_path / "d.h5ad"), "--label-key", "cell_type",
           "--metrics", "mean_corr,mmd", "--experiments", "main", "--no-control", "--out", str(tmp_path / "run")]  # fmt: skip

    def reused() -> int:
        done = subprocess.run(run, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        rows = [line for line in done.stdout.splitlines() if re.match(r"^\W*(nb|r-nb)\W", line)]
        assert {re.match(r"^\W*([\w-]+)", r)[1] for r in rows} >= {"nb", "r-nb"}, done.stdout
        assert not any("n/a" in r or " - " in r for r in rows), done.stdout
        return int(re.search(r"(\d+) reused", done.stdout)[1])

    assert reused() == 0
    assert reused() == 2
    (example / "nb.R").write_text((example / "nb.R").read_text() + "\n# edited\n")
    try:
        assert reused() == 1  # nb's task is reused, r-nb's runs again (and its image is rebuilt)
    finally:  # the image of the edited copy is this test's own
        label = f"org.scgenbench.manifest={example.resolve() / 'scgenbench.toml'}"
        for image in docker_engine.images.list(filters={"label": label}):
            for tag in image.tags:
                docker_engine.images.remove(tag, noprune=False)
