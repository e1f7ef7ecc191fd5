import tomllib

import pytest

from bench.api.errors import UserError
from bench.config import build_spec, load_toml


def test_cli_over_toml_over_profile(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'datasets = ["pbmc3k"]\nseeds = [0, 1, 2]\nprofile = "paper"\n'
        "[models.activa]\nepochs = 7\n[models.nb]\n"
        '[metrics.auc]\nspace = "pca50"\n[executor]\nname = "slurm"\npartition = "gpu"\n'
    )
    spec = build_spec(load_toml(cfg), seeds=[5], executor={"qos": "high"})
    assert spec.models == ["activa", "nb", "real", "shuffled"]  # the controls are added
    assert spec.seeds == [5]  # CLI wins
    assert spec.profile == "paper" and spec.n_top_genes is None
    assert spec.model_params == {"activa": {"epochs": 7}, "nb": {}}
    assert spec.metric_options == {"auc": {"space": "pca50"}}
    assert spec.executor == {"name": "slurm", "partition": "gpu", "qos": "high"}


def test_quick_profile_uses_hvgs():
    spec = build_spec(None, models=["nb"])
    assert spec.profile == "quick" and spec.n_top_genes == 2000 and spec.datasets == ["pbmc3k"]


def test_bad_config_keys_and_values(tmp_path):
    with pytest.raises(UserError, match="unknown config key"):
        build_spec({"modles": ["nb"], "models": ["nb"]})
    with pytest.raises(UserError, match="unknown profile"):
        build_spec(None, models=["nb"], profile="fast")
    with pytest.raises(UserError, match="no models"):
        build_spec(None)
    bad = tmp_path / "bad.toml"
    bad.write_text("models = [")
    with pytest.raises(UserError, match="invalid TOML"):
        load_toml(bad)


def test_models_list_with_model_params_tables():
    cfg = tomllib.loads('models = ["activa", "nb"]\n[model_params.activa]\nvariant = "paper"\n')
    spec = build_spec(cfg)
    assert spec.models == ["activa", "nb", "real", "shuffled"]
    assert spec.model_params == {"activa": {"variant": "paper"}}


def test_model_tables_must_be_tables_and_one_form_only():
    with pytest.raises(UserError, match=r"one table per model.*\['activa'\]"):
        build_spec(tomllib.loads('models = { activa = "paper" }'))
    with pytest.raises(UserError, match=r"one table per model.*\['nb'\]"):
        build_spec(tomllib.loads('models = ["nb"]\nmodel_params = { nb = 3 }'))
    with pytest.raises(UserError, match="both in"):
        build_spec(tomllib.loads("[models.nb]\n[model_params.nb]\nx = 1\n"))


def test_a_flag_sets_the_option_its_metric_declares(monkeypatch):
    """--fractions is the augmentation's flag (Metric.flags), mapped through its declaration; without
    a metric that declares it, the flag is a user error."""
    spec = build_spec(None, models=["nb"], fractions=[0.5, 0.1])
    assert spec.metric_options == {"augmentation": {"fractions": (0.5, 0.1)}}
    assert spec.experiments == ["main", "augmentation"]  # the experiments the metrics declare
    monkeypatch.setattr("bench.registry.available", lambda kind: {})
    with pytest.raises(UserError, match="--fractions sets an option of no installed metric"):
        build_spec(None, models=["nb"], fractions=[0.5])
    assert build_spec(None, models=["nb"]).experiments == ["main"]
