"""Download recipes (brain_small, pbmc68k): offline message, `add`, download from a local HTTP
server with atomic write + sha256 record + verification. No real network is used."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import bench.datasets as ds
from bench.api.errors import UserError
from bench.datasets import cache, recipes

sys.path.insert(0, str(Path(__file__).parent))
from datasets_fixtures import http_server, make_counts, make_published  # noqa: E402

UNREACHABLE = "http://127.0.0.1:9/"


@pytest.fixture
def bench_data(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("BENCH_DATA", str(root))
    monkeypatch.setattr(recipes.BRAIN_SMALL, "url", UNREACHABLE + "20kBrainSmall_preprocessed.h5")
    monkeypatch.setattr(recipes.PBMC68K, "url", UNREACHABLE + "68kPBMC_preprocessed.h5ad")
    return root


@pytest.fixture
def published_file(tmp_path):
    a = make_published()
    path = tmp_path / "local_copy.h5"  # AnnData content despite the .h5 extension, like the real one
    a.write_h5ad(path)
    return path, a


@pytest.mark.parametrize(
    "name, filename",
    [("brain_small", "20kBrainSmall_preprocessed.h5"), ("pbmc68k", "68kPBMC_preprocessed.h5ad")],
)
def test_offline_message_names_path_and_add(bench_data, name, filename):
    with pytest.raises(UserError, match=f"could not download dataset '{name}'") as exc:
        ds.prepare(name)
    expected = bench_data / "raw" / filename
    assert str(expected) in exc.value.fix
    assert f"bench datasets add {name} PATH" in exc.value.fix
    assert not expected.exists()
    assert not list((bench_data / "raw").glob("*"))  # no partial file left behind


def test_add_then_prepare_published(bench_data, published_file):
    path, a = published_file
    entry = ds.add("brain_small", path)
    dest = bench_data / "raw" / "20kBrainSmall_preprocessed.h5"
    assert dest.exists() and entry["path"] == str(dest.resolve())
    assert entry["sha256"] == cache.sha256_file(path) and entry["size"] == path.stat().st_size
    reg = json.loads((bench_data / "registry.json").read_text())
    assert reg["brain_small"]["sha256"] == entry["sha256"] and reg["brain_small"]["source"] == "add"
    info = ds.info("brain_small")
    assert info["present"] and info["sha256"] == entry["sha256"]

    p = ds.prepare("brain_small")
    assert p.label_key == "cluster" and p.default_rare_class == "2"
    held = a.obs_names[a.obs["split"].isin(["valid", "test"])]
    assert sorted(p.test.obs_names) == sorted(held)  # published split: 'valid' + 'test' held out
    assert p.info["split"].startswith("published")
    assert p.info["params"]["normalised_input"] is True
    assert list(p.train.obs["cluster"].cat.categories) == ["0", "1", "2", "3"]
    np.testing.assert_allclose(p.train.layers["counts"].toarray(), p.train.X.toarray())
    np.testing.assert_allclose(
        p.test.X.toarray(), a[p.test.obs_names, p.test.var_names].X.toarray(), rtol=1e-5
    )  # already normalised: X passes through
    np.testing.assert_allclose(np.asarray(p.train.X.sum(axis=1)).ravel(), 20_000, rtol=1e-5)
    hvg = ds.prepare("brain_small", n_top_genes=25)
    assert hvg.train.n_vars == 25
    np.testing.assert_allclose(np.asarray(hvg.train.X.sum(axis=1)).ravel(), 20_000, rtol=1e-5)


def test_add_refuses_wrong_schema(bench_data, tmp_path):
    counts = make_counts(label_key="cluster")
    counts.write_h5ad(tmp_path / "counts.h5ad")
    with pytest.raises(UserError, match="split column 'split' not found"):
        ds.add("pbmc68k", tmp_path / "counts.h5ad")
    counts.obs["split"] = "train"
    counts.write_h5ad(tmp_path / "counts.h5ad")
    with pytest.raises(UserError, match="normalised to 20000"):
        ds.add("pbmc68k", tmp_path / "counts.h5ad")
    no_label = make_published()
    del no_label.obs["cluster"]
    no_label.write_h5ad(tmp_path / "nolabel.h5ad")
    with pytest.raises(UserError, match="label column 'cluster' not found"):
        ds.add("pbmc68k", tmp_path / "nolabel.h5ad")
    with pytest.raises(UserError, match="bundled"):
        ds.add("pbmc3k", tmp_path / "counts.h5ad")
    assert not (bench_data / "registry.json").exists()


def test_download_from_local_server_records_and_verifies(bench_data, tmp_path, published_file, monkeypatch):
    path, a = published_file
    served = tmp_path / "served"
    served.mkdir()
    (served / "68kPBMC_preprocessed.h5ad").write_bytes(path.read_bytes())
    with http_server(served) as base:
        monkeypatch.setattr(recipes.PBMC68K, "url", base + "68kPBMC_preprocessed.h5ad")
        p = ds.prepare("pbmc68k")
    dest = bench_data / "raw" / "68kPBMC_preprocessed.h5ad"
    assert dest.read_bytes() == path.read_bytes()
    assert [f.name for f in dest.parent.iterdir()] == [dest.name]  # temp file renamed away
    entry = json.loads((bench_data / "registry.json").read_text())["pbmc68k"]
    assert entry["source"] == "download" and entry["url"].endswith("68kPBMC_preprocessed.h5ad")
    assert entry["sha256"] == cache.sha256_file(path) and entry["size"] == path.stat().st_size
    assert p.info["sha256"] == entry["sha256"] and p.default_rare_class == "2"

    # later uses verify the file (the server is gone: no second download happens)
    again = ds.prepare("pbmc68k")
    assert again.info["cached"] and again.hash == p.hash

    # a corrupted cached file fails verification with a clear message
    data = bytearray(dest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dest.write_bytes(bytes(data))
    with pytest.raises(UserError, match="corrupted or changed: sha256") as exc:
        ds.prepare("pbmc68k")
    assert f"delete {dest}" in exc.value.fix
    dest.write_bytes(bytes(data) + b"extra")
    with pytest.raises(UserError, match="corrupted or changed: .* bytes"):
        ds.prepare("pbmc68k")


def test_download_of_unusable_content_is_removed(bench_data, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    (served / "68kPBMC_preprocessed.h5ad").write_text("<html>AccessDenied</html>")
    with http_server(served) as base:
        monkeypatch.setattr(recipes.PBMC68K, "url", base + "68kPBMC_preprocessed.h5ad")
        with pytest.raises(UserError, match="not usable: could not read"):
            ds.prepare("pbmc68k")
        monkeypatch.setattr(recipes.PBMC68K, "url", base + "missing.h5ad")
        with pytest.raises(UserError, match="404"):
            ds.prepare("pbmc68k")
    assert not list((bench_data / "raw").iterdir())
    assert not (bench_data / "registry.json").exists()


def test_file_put_in_place_by_hand_is_registered(bench_data, published_file):
    path, _ = published_file
    dest = bench_data / "raw" / "20kBrainSmall_preprocessed.h5"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(path.read_bytes())
    p = ds.prepare("brain_small")
    assert p.info["sha256"] == cache.sha256_file(path)
    assert json.loads((bench_data / "registry.json").read_text())["brain_small"]["sha256"] == p.info["sha256"]


def test_load_raw_sets_counts_layer_for_normalised_files(bench_data, published_file):
    path, a = published_file
    ds.add("pbmc68k", path)
    raw = recipes.PBMC68K.load_raw()
    assert raw.shape == a.shape
    np.testing.assert_array_equal(raw.layers["counts"].toarray(), raw.X.toarray())
    pbmc = recipes.PBMC3K.load_raw()
    assert pbmc.shape == (2700, 16634) and "counts" not in pbmc.layers


def test_plugin_recipe_through_the_registry(bench_data, tmp_path, monkeypatch):
    from bench import registry

    path = tmp_path / "plugin.h5ad"
    make_counts(sizes=(40, 30, 20)).write_h5ad(path)
    recipe = recipes.DatasetRecipe(
        name="toy_plugin",
        description="a plugin's bundled toy data",
        label_key="cell_type",
        split_key=None,
        default_rare_class="B",
        url=None,
        citation="none",
        licence="CC0",
        filename="plugin.h5ad",
        kind="bundled",
        bundled_path=str(path),
    )
    monkeypatch.setitem(registry._EXTRA["datasets"], "toy_plugin", recipe)
    assert "toy_plugin" in {d["name"] for d in ds.list_datasets()}
    p = ds.prepare("toy_plugin")
    assert p.default_rare_class == "B" and (p.train.n_obs, p.test.n_obs) == (81, 9)
    assert ds.info("toy_plugin")["present"] is True
