"""Every TOML and shell snippet in README.md and docs/ parses (new docs are picked up automatically).

* fenced ```toml blocks parse with tomllib; run configs (anything but pyproject.toml excerpts)
  also go through ``build_spec``, as ``bench run --config`` would take them; so do the example
  config files the docs point to;
* every ``bench ...`` line of a fenced block parses with the real argparse parser;
* every inline `bench ...` span names a real subcommand and only flags it has (a --help-level
  check: placeholders like ``[--detach]`` and ``...`` are allowed there).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.cli import build_parser
from bench.config import build_spec, load_toml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CONFIG_FILES = sorted([*(ROOT / "examples").glob("*.toml"), *(ROOT / "results").rglob("*.toml")])
PYPROJECT_TABLES = {"project", "tool", "build-system"}
FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
INLINE = re.compile(r"(?<!`)`(bench(?: [^`]*)?)`(?!`)")


@dataclass
class Snippet:
    where: str  # file:line
    lang: str
    text: str


def fenced_blocks(path: Path) -> list[Snippet]:
    blocks, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2).lower(), i + 1
        i += 1
        body = []
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        blocks.append(Snippet(f"{path.relative_to(ROOT)}:{start}", lang, "\n".join(body)))
        i += 1
    return blocks


def bench_lines(block: Snippet) -> list[Snippet]:
    """``bench ...`` command lines of a shell-like block (``$ `` prompts and ``\\`` continuations)."""
    out, pending = [], ""
    for n, raw in enumerate(block.text.splitlines()):
        line = pending + raw.strip().removeprefix("$ ")
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith("bench ") or line == "bench":
            path, first = block.where.rsplit(":", 1)
            out.append(Snippet(f"{path}:{int(first) + n + 1}", "shell", line))
    return out


def inline_commands(path: Path) -> list[Snippet]:
    out, in_fence = [], False
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            out += [Snippet(f"{path.relative_to(ROOT)}:{n}", "inline", m) for m in INLINE.findall(line)]
    return out


BLOCKS = [b for doc in DOCS for b in fenced_blocks(doc)]
TOML_BLOCKS = [b for b in BLOCKS if b.lang == "toml"]
SHELL_LINES = [
    line
    for b in BLOCKS
    if b.lang in ("", "bash", "sh", "shell", "console", "text")
    for line in bench_lines(b)
]
INLINE_COMMANDS = [s for doc in DOCS for s in inline_commands(doc)]


def _ids(snippets: list[Snippet]) -> list[str]:
    return [s.where for s in snippets]


def test_snippets_are_found():
    """The extraction works: the README's own snippets are among those checked."""
    assert any(b.where.startswith("README.md") for b in TOML_BLOCKS)
    assert any(s.where.startswith("README.md") for s in SHELL_LINES)
    assert any(s.where.startswith("docs/") for s in SHELL_LINES)
    assert any(s.where.startswith("docs/") for s in INLINE_COMMANDS)
    assert len(CONFIG_FILES) >= 2


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=_ids(TOML_BLOCKS))
def test_toml_snippet_parses(block: Snippet, tmp_path, monkeypatch):
    try:
        cfg = tomllib.loads(block.text)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{block.where}: invalid TOML: {exc}")
    if PYPROJECT_TABLES & set(cfg):
        return  # an excerpt of a package's pyproject.toml
    if {"commands", "output_scale"} <= set(cfg):  # a generator manifest (docs/plugins.md): checked as one
        from bench.generators.container import parse_manifest

        (tmp_path / "Dockerfile").write_text("FROM scratch\n")
        (tmp_path / "scgenbench.toml").write_text(block.text)
        assert parse_manifest(tmp_path).name
        return
    monkeypatch.setenv(
        "BENCH_MANIFESTS", ""
    )  # a [models.X] manifest = ... table registers for this test only
    monkeypatch.chdir(ROOT)  # manifest paths are relative to the working directory
    spec = build_spec(cfg)
    assert spec.models


@pytest.mark.parametrize("path", CONFIG_FILES, ids=[str(p.relative_to(ROOT)) for p in CONFIG_FILES])
def test_example_config_files_build_a_spec(path: Path):
    assert build_spec(load_toml(path)).models


def _parse(argv: list[str]) -> str | None:
    """None when the parser accepts ``argv``, else its error message (``--help``/``--version`` are fine)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                return err.getvalue().strip().splitlines()[-1]
    return None


@pytest.mark.parametrize("line", SHELL_LINES, ids=_ids(SHELL_LINES))
def test_documented_command_parses(line: Snippet):
    argv = shlex.split(line.text, comments=True)[1:]
    error = _parse(argv)
    assert error is None, f"{line.where}: `{line.text}`: {error}"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


@pytest.mark.parametrize("cmd", INLINE_COMMANDS, ids=_ids(INLINE_COMMANDS))
def test_inline_command_names_real_subcommand_and_flags(cmd: Snippet):
    tokens = [t.strip("[]") for t in shlex.split(cmd.text)[1:] if t not in ("...", "…")]
    parser = build_parser()
    options = _options(parser)
    for tok in tokens:
        subs = _subparsers(parser)
        if tok.startswith("-"):
            assert tok.split("=")[0] in options, f"{cmd.where}: `{cmd.text}`: unknown option {tok}"
        elif subs:
            assert tok in subs, f"{cmd.where}: `{cmd.text}`: unknown command {tok!r} (one of {sorted(subs)})"
            parser = subs[tok]
            options = _options(parser)


def test_checks_reject_what_they_should():
    """The checks are not vacuous: a wrong flag, a wrong value and the old TOML form are caught."""
    assert "unrecognized arguments: --bogus" in _parse(["run", "--bogus"])
    assert "invalid choice" in _parse(["run", "--profile", "fast"])
    with pytest.raises(tomllib.TOMLDecodeError, match="twice"):
        tomllib.loads('models = ["activa"]\n[models.activa]\nvariant = "paper"\n')
