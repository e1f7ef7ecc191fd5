"""CI runs the README, verbatim: .ci/run takes its commands from README.md's marked blocks, runs the
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
    assert found["tests"] == ["python -m pytest"]
    # no variable in front of a README command: a user types them as they stand
    for command in [*found["setup-and-main-job"], *found["tests"]]:
        assert not re.match(r"^\w+=", command), command


def test_ci_runs_the_readme_blocks_and_nothing_in_their_place():
    text = CI.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "readme setup-and-main-job" in code and "readme tests" in code
    assert 'as_user "$cmd"' in code
    # the README's commands are not spelled out in CI (they come from the README only)
    found = readme_commands.blocks((ROOT / "README.md").read_text())
    for command in [*found["setup-and-main-job"], *found["tests"]]:
        assert command not in code, f".ci/run spells out {command!r} instead of reading the README"
    # no BENCH_* variable is exported before the README's setup and main job ran
    before = code[: code.index('as_user "$cmd"')]
    assert not re.search(r"^\s*(export\s+)?BENCH_\w+=", before, re.M), "BENCH_* set before the README steps"
    # the test-only switches wrap the test command only
    for line in code.splitlines():
        if "BENCH_REQUIRE_" in line:
            assert "tests[0]" in line, line


def test_as_user_drops_ci_only_variables(tmp_path):
    """The function .ci/run uses for the README's steps gives them the environment less BENCH_* and CI."""
    text = CI.read_text()
    body = re.search(r"^as_user\(\) \{.*?^\}", text, re.M | re.S).group(0)
    script = tmp_path / "probe.sh"
    script.write_text(body + '\nas_user "env"\n')
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
