"""CI runs the README, verbatim: .ci/run runs README.md's marked commands exactly as written, the
setup and the main job with a user's environment (no BENCH_* or CI variable), and wraps only the
test command with the test-only switches. These tests fail when the two drift apart."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci" / "run"
SCRIPT = ROOT / "scripts" / "ci" / "readme_commands.py"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


readme_commands = _module(SCRIPT)


def test_readme_marks_the_setup_main_job_and_test_commands():
    found = readme_commands.blocks((ROOT / "README.md").read_text())
    assert set(found) == {"setup-and-main-job", "tests"}
    setup, main_job = found["setup-and-main-job"]
    assert setup == "bash scripts/setup.sh --services"
    assert main_job.startswith("bench run ") and "--out" not in main_job
    # two xdist workers (tests/conftest.py)
    assert found["tests"] == ["python -m pytest -n 2 --dist loadgroup"]
    # no variable in front of a README command: a user types them as they stand
    for command in [*found["setup-and-main-job"], *found["tests"]]:
        assert not re.match(r"^\w+=", command), command


def ci_code() -> list[str]:
    """.ci/run's lines without comments and blank lines."""
    return [
        line for line in CI.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def test_ci_runs_the_readme_commands_exactly_as_written():
    found = readme_commands.blocks((ROOT / "README.md").read_text())
    code = ci_code()
    # setup and main job: through as_user (a user's environment), in the README's order, nothing else
    steps = [re.fullmatch(r"as_user '(.*)'", line).group(1) for line in code if line.startswith("as_user '")]
    assert steps == found["setup-and-main-job"]
    # the test command: the README's, wrapped only by the test-only switches
    (test_line,) = [line for line in code if "BENCH_REQUIRE_" in line]
    switches = "BENCH_REQUIRE_DOCKER=1 BENCH_REQUIRE_SLURM=1 BENCH_REQUIRE_CHROMIUM=1 "
    assert [test_line] == [switches + command for command in found["tests"]]
    # the README's steps come first, and no BENCH_* variable is set before they ran
    first = next(i for i, line in enumerate(code) if line.startswith("as_user '"))
    assert not any(re.search(r"^\s*(export\s+)?BENCH_\w+=", line) for line in code[:first])
    assert code.index(test_line) > first
    # the main-job check reads the run dir of exactly the README's main job
    assert f"python3 scripts/ci/check_main_job.py '{found['setup-and-main-job'][1]}'" in code
    # the gate starts from that run dir's store (its tasks with the gate's keys are reused)
    reuse = (
        f"--reuse \"$(python3 scripts/ci/check_main_job.py --run-dir '{found['setup-and-main-job'][1]}')\""
    )
    assert f"bash scripts/ci/regression-gate.sh {reuse}" in code


def test_as_user_drops_ci_only_variables(tmp_path):
    """The function .ci/run uses for the README's steps gives them the environment less BENCH_* and CI."""
    text = CI.read_text()
    body = re.search(r"^as_user\(\) \{.*?^\}", text, re.M | re.S).group(0)
    script = tmp_path / "probe.sh"
    script.write_text(body + '\nas_user "env"\n')  # prints the command, the environment, the time
    env = {**os.environ, "BENCH_BASE_IMAGE": "x", "BENCH_REQUIRE_DOCKER": "1", "CI": "true", "KEEP_ME": "1"}
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True).stdout
    names = {line.split("=", 1)[0] for line in out.splitlines() if "=" in line}
    assert "KEEP_ME" in names
    assert not {n for n in names if n.startswith("BENCH_")} and "CI" not in names


@pytest.mark.parametrize(
    "line, command",
    [
        ("bench run --models nb   # a comment", "bench run --models nb"),
        ("bash scripts/setup.sh --services", "bash scripts/setup.sh --services"),
        ("bench run --label-key 'a # b'  # c", "bench run --label-key 'a # b'"),
        ("# only a comment", ""),
    ],
)
def test_comments_are_dropped_and_commands_kept_as_written(line, command):
    assert readme_commands.strip_comment(line).strip() == command


def test_a_mark_without_a_fence_is_an_error():
    with pytest.raises(SystemExit, match="not followed by a code fence"):
        readme_commands.blocks("<!-- ci: x -->\ntext\n")


def _summary(rows, failures=()):
    return {"summary": rows, "failures": list(failures)}


def _row(model, experiment, metric, status="ok", n=1):
    return {"dataset": "pbmc3k", "model": model, "experiment": experiment, "metric": metric,
            "status": status, "n": n, "n_planned": 1}  # fmt: skip


def test_check_main_job_needs_every_models_rows(tmp_path, capsys):
    import json

    check = _module(ROOT / "scripts" / "ci" / "check_main_job.py")
    cmd = f"bench run --models nb,scgan --dataset pbmc3k --out {tmp_path}"
    rows = [_row(m, "main", "mmd") for m in ("nb", "scgan", "real", "shuffled")]
    rows += [_row(m, "augmentation", "f1_augmented@0.1") for m in ("nb", "real", "shuffled")]
    rows.append(_row("scgan", "main", "auc_type_mean", status="missing", n=0))  # n/a by design
    (tmp_path / "summary.json").write_text(json.dumps(_summary(rows)))
    assert check.main([cmd]) == 0  # scgan is unconditional: no augmentation rows needed
    for broken in (
        [r for r in rows if not (r["model"] == "nb" and r["experiment"] == "augmentation")],
        [*rows, _row("nb", "main", "cd", status="partial")],
        [r if r["model"] != "shuffled" else {**r, "status": "failed", "n": 0} for r in rows],
    ):
        (tmp_path / "summary.json").write_text(json.dumps(_summary(broken)))
        assert check.main([cmd]) == 1


def test_check_main_job_prints_the_run_dir_the_gate_reuses(tmp_path, capsys):
    check = _module(ROOT / "scripts" / "ci" / "check_main_job.py")
    assert check.main(["--run-dir", f"bench run --models nb --dataset pbmc3k --out {tmp_path}"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path.resolve())
    assert check.main(["--run-dir"]) == 2


def test_gate_reuse_of_a_dir_without_results_is_one_line_and_exit_2(tmp_path):
    gate = ROOT / "scripts" / "ci" / "regression-gate.sh"
    env = {**os.environ, "BENCH_GATE_DIR": str(tmp_path / "gate")}
    for args, says in (
        (["--reuse", str(tmp_path / "nothing")], "no scgenbench results in"),
        (["--reuse"], "usage: regression-gate.sh [--reuse RUN_DIR]"),
        (["--bogus", "x"], "usage: regression-gate.sh [--reuse RUN_DIR]"),
    ):
        proc = subprocess.run(["bash", str(gate), *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
        assert not (tmp_path / "gate").exists()  # nothing half-written
