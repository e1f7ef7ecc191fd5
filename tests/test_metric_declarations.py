"""What a metric declares about itself: its figures (titles, captions built from its options)."""

from __future__ import annotations

import pytest

from bench.api.metric import FigureSpec, Metric, MetricOutput
from bench.metrics import CD, TIMING
from bench.registry import available


def _noop(ctx, generated, *, seed, **options):
    return MetricOutput(values={})


def test_caption_is_the_template_filled_with_the_options():
    assert "top 5 DE genes per cluster (wilcoxon test" in CD.caption("correlation")
    assert "top 12 DE genes per cluster (t-test test" in CD.caption(
        "correlation", {"n_genes": 12, "method": "t-test"}
    )
    assert "measured on 10,000 cells" in TIMING.caption("timing", TIMING.options_for("quick"))
    with pytest.raises(KeyError):
        CD.caption("roc")


def test_a_caption_naming_an_unknown_option_is_refused_at_declaration():
    with pytest.raises(ValueError, match="caption of figure 'x'"):
        Metric(name="m", func=_noop, options={"k": 5}, figures=(FigureSpec("x", "X", "k = {k}, n = {n}"),))
    ok = Metric(name="m", func=_noop, options={"k": 5}, figures=(FigureSpec("x", "X", "k = {k}"),))
    assert ok.caption("x", {"k": 7}) == "k = 7" and ok.figure("x").title == "X"


def test_every_report_figure_section_is_declared_once_and_drawn_by_its_metric():
    """The report draws what the metrics declare: every built-in figure has a draw callable in the
    plugin folder, sections are unique and none is one of the report's own figures."""
    from bench.report import html
    from bench.report.view import figures_of

    declared = [(m, f) for m in available("metrics").values() for f in m.figures]
    sections = [f.section for _, f in declared]
    assert len(sections) == len(set(sections))
    assert not set(sections) & set(html.REPORT_FIGURES)
    for _, fig in declared:
        assert callable(fig.draw) and fig.draw.__module__.startswith("bench.metrics."), fig.section
    paper = [f.section for _, f in figures_of("paper")]
    assert paper == ["umap", "markers", "roc", "correlation", "augmentation", "timing"]
    assert [f.section for _, f in figures_of("suite")] == ["prdc", "memorisation", "per_type", "de_recovery"]


def test_paper_tables_are_declared_by_their_metrics():
    from bench.api import TableSpec
    from bench.report.tables import paper_specs

    titles = [t.title.split(" — ")[0] for _, t in paper_specs()]
    assert titles == ["Fig. 3", "Table 2", "Fig. 5", "Table 1", "Fig. 7"]
    assert CD.tables[0].title_for({"method": "t-test", "n_genes": 5}).endswith("(t-test test)")
    # tasks that ran with different options: the title without the suffix
    assert CD.tables[0].title_for([{"method": "a"}, {"method": "b"}]) == CD.tables[0].title
    with pytest.raises(ValueError, match="either values or arms"):
        TableSpec("T")


def test_each_metric_declares_what_the_runner_hands_it():
    from bench.metrics import AUGMENTATION, MMD, PER_TYPE

    assert MMD.main_input == "main" and PER_TYPE.main_input == "per-label"
    assert TIMING.main_input == "fit" and AUGMENTATION.main_input is None
    with pytest.raises(ValueError, match="unknown kind"):
        Metric(name="m", func=_noop, kind="samples")
    with pytest.raises(ValueError, match="unknown cells"):
        Metric(name="m", func=_noop, cells="per-type")


def test_the_augmentation_plans_its_rare_class_at_plan_time():
    """The experiment's plan-time hook (Metric.plan) chooses the rare class by its rule, keeps the
    user's with a note for a fraction that keeps too few cells, and returns its fractions sorted."""
    from bench.metrics import AUGMENTATION

    labels = {"train": {"a": 2000, "b": 300, "c": 40}, "test": {"a": 200, "b": 30, "c": 4}}
    chosen = AUGMENTATION.plan(labels, {"fractions": (0.01, 0.1)}, rare=None, chosen_by="-", clustered=True)
    # the smallest class keeping >= 5 cells at 0.01: not c (0 of 40), not b (3 of 300), a (20 of 2000)
    assert chosen.label == "a" and chosen.options["fractions"] == (0.1, 0.01)
    assert (
        chosen.header.startswith("augmentation: rare class 'a' (the smallest class")
        and "Leiden" in chosen.header
    )
    kept = AUGMENTATION.plan(labels, {"fractions": (0.1, 0.05)}, rare="c", chosen_by="--rare-class")
    assert kept.label == "c" and kept.header == "augmentation: rare class 'c' (--rare-class)"
    assert kept.notes and "fraction 0.1 keeps 4, 0.05 keeps 2" in kept.notes[0]


def test_a_hook_or_flag_that_does_not_fit_the_metric_is_refused_at_declaration():
    from bench.api import Planned

    with pytest.raises(ValueError, match="only an 'experiment' metric has a plan-time hook"):
        Metric(name="m", func=_noop, plan=lambda *a, **k: Planned({}))
    with pytest.raises(ValueError, match="flags set unknown option"):
        Metric(name="m", func=_noop, options={"k": 5}, flags={"kk": "kk"})
    with pytest.raises(ValueError, match="part must be"):
        Metric(name="m", func=_noop, figures=(FigureSpec("x", "X", "x", part="appendix"),))
