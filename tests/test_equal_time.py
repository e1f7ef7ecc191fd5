"""The equal-training-seconds table (bench.report.equal_time): known answers on hand-made curves."""

from __future__ import annotations

import numpy as np

from bench.report import equal_time


def curve(seconds, mmd):
    return {
        "step": np.arange(1, len(seconds) + 1),
        "train_seconds": np.asarray(seconds, float),
        "mmd": np.asarray(mmd, float),
    }


def test_value_at_reads_the_last_snapshot_within_the_seconds():
    c = curve([10, 20, 40, 80], [0.4, 0.3, 0.2, 0.1])
    assert equal_time.value_at(c, "mmd", 5) is None  # the first snapshot came later
    assert equal_time.value_at(c, "mmd", 10) == (0.4, False)
    assert equal_time.value_at(c, "mmd", 39.9) == (0.3, False)
    assert equal_time.value_at(c, "mmd", 80) == (0.1, True)
    assert equal_time.value_at(c, "mmd", 1e6) == (0.1, True)  # ended: its final value
    assert equal_time.value_at(c, "auc", 80) is None


def test_table_compares_every_model_at_each_models_full_time():
    curves = {
        "fast": [curve([1, 2, 4, 8], [0.5, 0.4, 0.3, 0.2]), curve([1, 2, 4, 10], [0.5, 0.4, 0.3, 0.4])],
        "slow": [curve([10, 20, 40, 80], [0.9, 0.5, 0.2, 0.05])],
    }
    df = equal_time.equal_seconds_table(curves, "mmd")
    # columns: fast's median full time (9 s), slow's (80 s)
    assert list(df.columns) == ["at 9 s (fast)", "at 80 s (slow)"]
    # at 9 s: fast seed 0 ended (0.2), seed 1 at its 4 s snapshot (0.3); slow had no snapshot yet
    assert df.loc["fast", "at 9 s (fast)"] == f"0.250 ± {np.std([0.2, 0.3], ddof=1):.3f}"
    assert df.loc["slow", "at 9 s (fast)"] == equal_time.NOT_YET
    # at 80 s: fast ended in both seeds (marked), slow at its full budget
    assert df.loc["fast", "at 80 s (slow)"] == f"0.300 ± {np.std([0.2, 0.4], ddof=1):.3f}{equal_time.ENDED}"
    assert df.loc["slow", "at 80 s (slow)"] == f"0.050{equal_time.ENDED}"


def test_a_cell_over_fewer_seeds_than_the_model_has_says_n_of_n():
    # seed 1's first snapshot came after 5 s: the cell at 5 s averages seed 0 alone, and says so
    curves = {
        "a": [curve([2, 4, 8, 16], [0.5, 0.4, 0.3, 0.2]), curve([6, 12, 24, 48], [0.6, 0.5, 0.4, 0.3])],
        "b": [curve([1, 2, 3, 5], [0.9, 0.8, 0.7, 0.6])],
    }
    df = equal_time.equal_seconds_table(curves, "mmd")
    assert df.loc["a", "at 5 s (b)"] == "0.400 (1/2)"
    assert df.loc["a", "at 32 s (a)"] == f"0.300 ± {np.std([0.2, 0.4], ddof=1):.3f}"  # both seeds: no n/N
    assert df.loc["b", "at 32 s (a)"] == f"0.600{equal_time.ENDED}"


def test_no_snapshots_no_table():
    assert equal_time.equal_seconds_table({}, "mmd").empty
    assert equal_time.equal_seconds_table({"m": [curve([1], [0.1])]}, "auc").empty
