"""Checks of model parameters and metric options (bench.api.options): known answers of the interval
notation, every built-in's declarations agree with its code, and a wrong value is a UserError."""

from __future__ import annotations

import inspect

import pytest

from bench.api.errors import UserError
from bench.api.metric import Metric, MetricOutput
from bench.api.options import check_value, describe, within
from bench.registry import available
from bench.tune import grid_points


@pytest.mark.parametrize(
    ("value", "bound", "expected"),
    [
        (1, "[1, inf) integer", True), (0, "[1, inf) integer", False), (1.0, "[1, inf) integer", False),
        (True, "[0, inf)", False), ("1", "[0, inf)", False), (0, "(0, 1]", False), (1, "(0, 1]", True),
        (1, "(0, 1)", False), (0.5, "(0, 1)", True), (-3.5, "(-inf, 0]", True), (2, "[0, 1]", False),
    ],
)  # fmt: skip
def test_interval_notation(value, bound, expected):
    assert within(value, bound) is expected


def test_describe_and_malformed_bounds():
    assert describe("[1, inf) integer") == "an integer in [1, inf)"
    assert describe("(0, 1]") == "a number in (0, 1]"
    for bad in ("1, 2", "[1, 2) int", "[1; 2]", "[1, 2, 3]"):
        with pytest.raises(ValueError, match="malformed bound"):
            within(0, bad)
    with pytest.raises(ValueError, match="not a parameter or option"):
        Metric(name="m", func=lambda ctx, g, *, seed: MetricOutput({}), bounds={"k": "[1, inf)"})
    with pytest.raises(ValueError, match="malformed bound"):
        Metric(
            name="m", func=lambda ctx, g, *, seed, k=1: MetricOutput({}), options={"k": 1}, bounds={"k": "1+"}
        )


@pytest.mark.parametrize(
    ("value", "default", "message"),
    [
        ("ten", 10, "is not an integer"), (2.5, 10, "is not an integer"), (True, 1.0, "is not a number"),
        (1, "genes", "is not a string"), ("yes", True, "is not true or false"), (3, (1, 2), "is not a list"),
    ],
)  # fmt: skip
def test_a_value_has_its_defaults_type(value, default, message):
    with pytest.raises(UserError, match=message) as err:
        check_value("metric m", "[metrics.m]", "x", value, default)
    assert "[metrics.m]" in err.value.fix
    check_value("metric m", "[metrics.m]", "x", 3, 1.5)  # an integer is a number
    check_value("metric m", "[metrics.m]", "x", [1], (1, 2))  # TOML arrays are lists
    check_value("metric m", "[metrics.m]", "x", "anything", None)  # None defaults take any type


@pytest.mark.parametrize("name", sorted(available("metrics")))
def test_a_metrics_options_are_its_functions_keywords_and_every_profile_passes(name):
    """The unknown-option check must never reject an option the metric's function takes."""
    metric = available("metrics")[name]
    params = inspect.signature(metric.func).parameters
    keywords = {k for k, p in params.items() if p.kind == p.KEYWORD_ONLY} - {"seed"}
    assert keywords == set(metric.options)
    for profile in ("quick", "standard", "paper"):
        metric.options_for(profile)


@pytest.mark.parametrize("name", sorted(available("generators")))
def test_every_profile_of_every_generator_passes_its_checks(name):
    cls = available("generators")[name]
    for profile in ("quick", "standard", "paper"):
        cls(**cls.params_for_profile(profile))
    for point in grid_points(cls.tuning) if cls.tuning else []:  # every point `bench tune` fits
        cls(**{**cls.params_for_profile("standard"), **cls.tuning_params(point)})


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        ("copula", {"zp_cutoff": "high"}, "zp_cutoff = 'high' is not a number"),
        ("copula", {"copula_genes": -1}, "copula_genes = -1 is not an integer in [0, inf)"),
        ("scvi", {"n_latent": 0}, "n_latent = 0 is not an integer in [1, inf)"),
        ("scvi", {"gene_likelihood": "poisson"}, "gene_likelihood = 'poisson' is not supported"),
        ("scvi", {"train_size": 1.5}, "train_size = 1.5 is not a number in (0, 1]"),
        ("activa", {"epochs": "ten"}, "epochs = 'ten' is not an integer"),
        ("activa", {"confidence": 1.0}, "confidence = 1.0 is not a number in [0, 1)"),
        ("nb", {"min_dispersion": 0}, "min_dispersion = 0 is not a number in (0, inf)"),
        ("cscgan", {"label_ratios": "sorted"}, "label_ratios = 'sorted' is not supported"),
        ("scgan", {"critic_layers": [512, -1]}, "has an item that is not an integer in [1, inf)"),
        ("scgan", {"cpu_limit": 0}, "cpu_limit = 0 is not a number in (0, inf)"),
        ("scgan", {"mem_limit": "lots"}, "cannot read memory limit 'lots'"),
    ],
)  # fmt: skip
def test_a_bad_model_parameter_is_a_user_error(model, params, message):
    with pytest.raises(UserError) as err:
        available("generators")[model](**params)
    assert message in str(err.value) and err.value.fix


@pytest.mark.parametrize(
    ("metric", "options", "message"),
    [
        ("auc", {"bogus": 1}, "metric auc has no option(s) bogus"),
        ("auc", {"space": "umap"}, "space = 'umap' is not supported"),
        ("prdc", {"k": 0}, "k = 0 is not an integer in [1, inf)"),
        ("memorisation", {"quantile": 1}, "quantile = 1 is not a number in (0, 1)"),
        ("sinkhorn", {"scaling": 1.0}, "scaling = 1.0 is not a number in (0, 1)"),
        ("per_type", {"metrics": ["auc", "fid"]}, "metrics = ['auc', 'fid'] is not supported"),
        ("augmentation", {"fractions": [0.1, 0]}, "has an item that is not a number in (0, 1]"),
        ("de_recovery", {"top_k": 2.5}, "top_k = 2.5 is not an integer"),
        ("embedding", {"min_dist": 2.0}, "min_dist = 2.0 is not a number in [0, 1]"),
        ("timing", {"n_cells": 0}, "n_cells = 0 is not an integer in [1, inf)"),
    ],
)  # fmt: skip
def test_a_bad_metric_option_is_a_user_error(metric, options, message):
    with pytest.raises(UserError) as err:
        available("metrics")[metric].options_for("quick", options)
    text = str(err.value)
    assert message in text
    assert f"[metrics.{metric}]" in text or "bench list metrics" in text
