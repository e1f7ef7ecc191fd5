"""Check that the README's main job filled every model's rows: exit 0, else 1 with what is missing.

    python3 scripts/ci/check_main_job.py "bench run --models activa,scgan,cscgan,nb --dataset pbmc3k"
    python3 scripts/ci/check_main_job.py --run-dir "bench run ..."   # print that command's run dir only

The command is parsed with bench's own parser, so the run dir, models (with the controls),
experiments and seeds are the ones that command used. Every (dataset, model, experiment) the run
planned must be in the run dir's summary.json with values from every planned seed and no failed
or partial cell (the augmentation experiment: for conditional models).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from bench.cli import build_parser, spec_of
    from bench.registry import get_generator
    from bench.runner import default_run_dir

    print_dir = argv[:1] == ["--run-dir"]
    if print_dir:
        argv = argv[1:]
    if len(argv) != 1:
        print("usage: check_main_job.py [--run-dir] 'bench run ...'", file=sys.stderr)
        return 2
    words = shlex.split(argv[0])
    if words[:2] != ["bench", "run"]:
        print(f"not a bench run command: {argv[0]}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(words[1:])
    spec = spec_of(args)  # the spec `bench run` itself builds from these arguments
    run_dir = Path(args.out) if args.out else default_run_dir(spec)
    if print_dir:
        print(run_dir.resolve())
        return 0
    summary = json.loads((run_dir / "summary.json").read_text())
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for row in summary["summary"]:
        cells.setdefault((row["dataset"], row["model"], row["experiment"]), []).append(row)
    problems = [f"failed: {f}" for f in summary.get("failures", [])]
    datasets = sorted({d for d, _, _ in cells})
    for dataset in datasets:
        for model in spec.models:
            for experiment in spec.experiments:
                rows = cells.get((dataset, model, experiment))
                if rows is None:
                    # the augmentation experiment is n/a for an unconditional model
                    if experiment == "main" or get_generator(model).conditional:
                        problems.append(f"{dataset}/{model}/{experiment}: no values")
                    continue
                # "missing" (n = 0 of a finished task) is a value this model does not make by design
                # (an unconditional model's per-label values): n/a in the tables, not a hole
                short = [
                    f"{r['metric']} {r['status']} n={r['n']}/{r['n_planned']}"
                    for r in rows
                    if r["status"] in ("failed", "partial")
                ]
                if not any(r["status"] == "ok" for r in rows):
                    short.insert(0, "no value from every planned seed")
                if short:
                    problems.append(f"{dataset}/{model}/{experiment}: {', '.join(short[:5])}")
    if not datasets:
        problems.append("summary.json holds no values")
    for p in problems:
        print(f"main job: {p}", file=sys.stderr)
    if problems:
        return 1
    n = sum(len(v) for v in cells.values())
    print(f"main job: every model's rows are filled ({len(spec.models)} models, {n} cells, {run_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
