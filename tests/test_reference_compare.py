"""scripts/reference_compare.py --readme: the README's reference tables from a run's summary.json."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("reference_compare", ROOT / "scripts" / "reference_compare.py")
rc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rc)


def _row(model, metric, mean, sd=None, n=3, experiment="main", **params):
    return {"dataset": "d", "model": model, "experiment": experiment, "metric": metric, "mean": mean, "sd": sd,
            "n": n, "n_planned": n, "status": "ok", "params": params}  # fmt: skip


def _doc() -> dict:
    summary = []
    for model, auc in (("nb", 0.9), ("scvi", 0.7), ("real", 0.5), ("shuffled", 0.95)):
        summary.append(_row(model, "auc", auc, 0.01))
    for f in ("0.1", "0.01"):
        summary += [
            _row("real", f"f1_real@{f}", 0.8 if f == "0.1" else 0.0, 0.0, experiment="augmentation"),
            _row("real", f"f1_oversampled@{f}", 0.7 if f == "0.1" else 0.0, 0.0, experiment="augmentation"),
            _row("scvi", f"f1_augmented@{f}", 0.9, 0.05, experiment="augmentation"),
            _row("cscgan", f"f1_augmented@{f}", 0.03, None, n=1, experiment="augmentation"),
        ]
    scaled = [
        {"model": "nb", "mean": 0.6, "sd": 0.1, "n": 3},
        {"model": "scvi", "mean": 0.7, "sd": 0.02, "n": 3},
    ]
    return {"summary": summary, "mean_scaled": scaled}


def test_main_table_best_first_controls_last():
    lines = rc.readme_tables(_doc())
    models = [ln.split("|")[1].strip() for ln in lines[2:6]]
    assert models == ["scvi", "nb", "real", "shuffled"]
    assert lines[2].endswith("| 0.700 ± 0.020 |")  # scVI's mean scaled score


def test_augmentation_table_names_the_fractions_and_a_model_at_fewer_seeds():
    lines = rc.readme_tables(_doc())
    aug = lines[lines.index("") + 1 :]
    assert aug[0] == "| rare type kept | 10 % | 1 % |"
    assert aug[2] == "| real cells only | 0.800 ± 0.000 | 0.000 ± 0.000 |"
    assert aug[3] == "| + oversampled real | 0.700 ± 0.000 | 0.000 ± 0.000 |"
    labels = [ln.split("|")[1].strip() for ln in aug[4:]]
    assert labels == ["+ cscgan (1 of 3 seeds)", "+ scvi"]
    assert aug[4].endswith("| 0.030 | 0.030 |")
