"""The `bench` command line's grammar: every sub-command, its flags and their help texts, one
function per sub-command. What each command does is in the other modules of bench.cli, which hands
their functions in."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Mapping

from bench.config import PROFILES

Command = Callable[[argparse.Namespace], int]

RUN_EXAMPLES = textwrap.dedent(
    """\
    examples:
      bench run --models activa,nb --dataset pbmc3k               # quick profile, seed 0, + `real` control
      bench run --models activa,scgan --dataset brain_small --seeds 0,1,2 --profile paper
      bench run --models nb --dataset my.h5ad --label-key cell_type
      bench run --models nb --dataset my.h5ad                     # no labels: clustered like scGAN
      bench run --config run.toml --executor slurm --partition gpu --detach
    """
)
EPILOG = textwrap.dedent(
    """\
    examples:
      bench run --models activa,nb --dataset pbmc3k               # more: bench run --help
      bench report results/quick --html
      bench list generators
      bench plugins add examples/r-nb                             # a generator in R (a manifest)
      bench datasets info brain_small
      bench datasets add brain_small ~/Downloads/20kBrainSmall_preprocessed.h5
      bench baseline results/quick -o baseline.json
      bench check results/quick --baseline results/baselines/quick-pbmc3k.json
    """
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scgenbench")
    except PackageNotFoundError:  # a source tree that is not installed
        from bench import __version__

        return __version__


def _run(sub, func: Command) -> None:
    """`bench run`: its flags and help."""
    r = sub.add_parser(
        "run",
        help="train, generate and score models on datasets",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--models", help="comma-separated generator names (see `bench list generators`)")
    r.add_argument(
        "--dataset",
        "--datasets",
        dest="dataset",
        help="dataset name(s) or path (.h5ad, 10x .h5, 10x matrix dir); default pbmc3k",
    )
    r.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    r.add_argument(
        "--profile",
        choices=list(PROFILES),
        help="quick (CPU smoke test, default), standard (converged on the bundled data, ~30 min per "
        "model and seed on 2 cores) or paper (the published settings, for a GPU)",
    )
    r.add_argument("--config", help="TOML file with the run spec (CLI flags override it)")
    r.add_argument(
        "--normalisation",
        metavar="{hvg,all-genes}",
        help="library size 20,000 over the selected genes (hvg, default) or over all genes before "
        "selecting them (all-genes: scanpy's convention, the paper's); docs/datasets.md",
    )
    r.add_argument("--label-key", help="obs column with cell-type labels (for files given by path)")
    r.add_argument(
        "--rare-class",
        help="label the augmentation experiment downsamples (default: the smallest "
        "type keeping >= 5 training cells at the smallest fraction)",
    )
    r.add_argument(
        "--fractions",
        help="augmentation: fractions of the rare class kept, e.g. 0.1,0.05,0.01,0.005 "
        "(the paper's: the default of standard and paper; quick runs 0.1,0.005)",
    )
    r.add_argument("--metrics", help="comma-separated metric names (default: all installed)")
    r.add_argument(
        "--experiments",
        help="comma-separated, e.g. main (default: main and every experiment a metric declares)",
    )
    r.add_argument(
        "--allow-relaxed-sandbox",
        metavar="MODELS",
        help="comma-separated models allowed to run with the sandbox relaxations their plugin declares "
        "(network, capabilities, ...; `bench list generators` shows them; docs/docker.md)",
    )
    r.add_argument(
        "--protocol",
        help="evaluation protocols the sample metrics are also scored in, comma-separated: pca-real, "
        "paper (the authors' Seurat integration in R, both groupings; or paper:joint, paper:pairwise), "
        "harmony (a Python stand-in for paper); genes is always scored (docs/metrics.md)",
    )
    r.add_argument(
        "--main-generation",
        choices=["unconditional", "per-label"],
        help="main experiment: sample freely (paper protocol, default) or the test set's per-label counts",
    )
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto: CUDA when available")
    r.add_argument("--out", help="run dir (default results/<profile>)")
    r.add_argument("--force", action="store_true", help="recompute tasks the store already has")
    r.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="wall-clock limit per task: stops a generator's container and also its in-process "
        "training (checked between training steps), and the task's child process (fit, generate, "
        "score) is killed 5 s past it; the task is recorded as failed",
    )
    r.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="let a container model with backend auto run its entry point as a local process, outside "
        "the container sandbox, when no Docker engine answers (said in one line when it happens)",
    )
    r.add_argument(
        "--memory-limit",
        type=float,
        metavar="GB",
        help="memory cap per task (default: 0.8 of the memory available when the task starts); the "
        "task's child process is killed at it and the task recorded as failed with the reason",
    )
    r.add_argument(
        "--in-process",
        action="store_true",
        help="run the tasks in the bench process, not each in a child process (for a debugger such "
        "as pdb; local executor only): no memory cap, and --timeout only stops a model's own training "
        "loop; an out-of-memory kill then ends bench itself",
    )
    r.add_argument(
        "--no-control",
        action="store_true",
        help="do not add the `real` (positive) and `shuffled` (negative) controls",
    )
    r.add_argument(
        "--no-orientation-check",
        action="store_true",
        help="accept a file whose names look transposed (barcodes as var, genes as obs); "
        "by default such a file is refused (docs/datasets.md)",
    )
    r.add_argument("--executor", choices=["local", "slurm"], help="where tasks run (default local)")
    r.add_argument("--partition", help="Slurm partition")
    r.add_argument("--account", help="Slurm account")
    r.add_argument("--qos", help="Slurm QOS")
    r.add_argument("--detach", action="store_true", help="submit (Slurm) and return at once")
    r.add_argument(
        "--dry-run", action="store_true", help="print the resolved run and its tasks; run and write nothing"
    )
    r.set_defaults(func=func)


def _report(sub, func: Command) -> None:
    """`bench report`: its flags and help."""
    rep = sub.add_parser("report", help="tables (and --html report) of a run dir")
    rep.add_argument("run_dir", help="run dir of `bench run` (--out; default results/<profile>)")
    rep.add_argument("--html", action="store_true", help="write a self-contained HTML report")
    rep.add_argument(
        "--all", action="store_true", help="print every table (default: the headline and the paper's tables)"
    )
    rep.add_argument("-o", "--output", help="HTML output path (default RUN_DIR/report.html)")
    rep.set_defaults(func=func)


def _site(sub, func: Command) -> None:
    """`bench site`: its flags and help."""
    site = sub.add_parser(
        "site", help="a static results site across run dirs (index, a page per dataset and per model)"
    )
    site.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run dirs of `bench run`, or folders with their summary.json",
    )
    site.add_argument("-o", "--output", required=True, help="the site's folder (index.html at its top)")
    site.add_argument(
        "--link",
        action="store_true",
        help="link each run's report and summary files where they lie instead of copying them",
    )
    site.set_defaults(func=func)


def _list(sub, func: Command) -> None:
    """`bench list`: its flags and help."""
    ls = sub.add_parser("list", help="installed generators, metrics and datasets")
    ls.add_argument(
        "kind",
        nargs="?",
        choices=["generators", "metrics", "datasets"],
        help="list only these (default: all three)",
    )
    ls.add_argument(
        "--profile",
        choices=list(PROFILES),
        default="quick",
        help="show this run profile's parameter and option values (default quick)",
    )
    ls.set_defaults(func=func)


def _datasets(sub, func: Command) -> None:
    """`bench datasets`: its flags and help."""
    ds = sub.add_parser("datasets", help="dataset recipes: list, info, add a local copy")
    dsub = ds.add_subparsers(dest="action", metavar="ACTION")
    dsub.add_parser("list", help="list dataset recipes")
    info = dsub.add_parser("info", help="show a dataset's source, licence, cache state")
    info.add_argument("name", help="registered dataset name (see `bench datasets list`)")
    add = dsub.add_parser("add", help="register a local file for a dataset (no download)")
    add.add_argument("name", help="registered dataset name, e.g. brain_small")
    add.add_argument("path", help="your local copy of that dataset's file")
    ds.set_defaults(func=func, action="list")


def _images(sub, func: Command) -> None:
    """`bench images`: its flags and help."""
    im = sub.add_parser("images", help="container images of generators")
    isub = im.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = isub.add_parser("build", help="build a generator's image")
    b.add_argument("name", help="generator with an image, e.g. scgan, or a manifest plugin's directory")
    b.add_argument(
        "--base-image",
        help="base image; recorded in your settings file as the one runs use (default: $BENCH_BASE_IMAGE, "
        "the recorded one, python:3.11-slim, a local image labelled org.scgenbench.base; docs/docker.md)",
    )
    b.add_argument("--no-record", action="store_true", help="do not record --base-image as your base image")
    b.add_argument(
        "--variant",
        choices=["cpu", "gpu"],
        default="cpu",
        help="cpu (default) or gpu: the framework built with CUDA, what --device cuda runs",
    )
    im.set_defaults(func=func)


def _plugins(sub, func: Command) -> None:
    """`bench plugins`: its flags and help."""
    pl = sub.add_parser(
        "plugins",
        help="generators added with a manifest (scgenbench.toml + an image; any language): add, remove, list",
        description="Register a generator that is a directory holding scgenbench.toml and a build context "
        "(docs/plugins.md, 'A model in any language'); registrations live in your settings file.",
    )
    psub = pl.add_subparsers(dest="action", metavar="ACTION")
    pa = psub.add_parser("add", help="check a manifest and register its generator for you")
    pa.add_argument("path", help="directory holding scgenbench.toml (or the file)")
    pr = psub.add_parser("remove", help="forget a registered manifest generator")
    pr.add_argument("name", help="the generator's name (see `bench plugins list`)")
    psub.add_parser("list", help="the registered manifest generators and their state")
    pl.set_defaults(func=func, action="list")


def _check(sub, func: Command) -> None:
    """`bench check`: its flags and help."""
    ck = sub.add_parser(
        "check",
        help="compare a run with a baseline; exit 1 on regression",
        description="Compare every directional value of RUN_DIR with a baseline file: "
        "exit 1 when a value got worse by more than its slack or is missing, else 0.",
    )
    ck.add_argument("run_dir", help="run dir of the `bench run` to check")
    ck.add_argument(
        "--baseline",
        required=True,
        metavar="BASELINE.json",
        help="baseline file written by `bench baseline` (from a trusted run)",
    )
    ck.add_argument(
        "--rel",
        type=float,
        help="slack as a fraction of the value's own scale (default 0.05; overrides the baseline's)",
    )
    ck.add_argument(
        "--sd-units", type=float, help="slack in seed-to-seed sd units (default 3; overrides the baseline's)"
    )
    ck.add_argument("--experiments", help="check only these experiments, e.g. main")
    ck.add_argument("--models", help="check only these models, e.g. nb,real")
    ck.set_defaults(func=func)


def _baseline(sub, func: Command) -> None:
    """`bench baseline`: its flags and help."""
    bl = sub.add_parser(
        "baseline",
        help="write a regression baseline from a run dir",
        description="Write the mean and seed-to-seed sd of every directional value of a "
        "trusted run (use several seeds), with the slack, for `bench check`.",
    )
    bl.add_argument("run_dir", help="run dir of a trusted `bench run`")
    bl.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="BASELINE.json",
        help="where to write the baseline (commit it next to your CI config)",
    )
    bl.add_argument("--experiments", help="only these experiments, e.g. main")
    bl.add_argument("--models", help="only these models, e.g. my_model,nb,real")
    bl.set_defaults(func=func)


def _tune(sub, func: Command) -> None:
    """`bench tune`: its flags and help."""
    tu = sub.add_parser(
        "tune",
        help="the standard profile's tuning sweep: a model's grid scored by MMD on a validation split "
        "of the training cells",
    )
    tu.add_argument("--model", required=True, help="generator name")
    tu.add_argument("--dataset", default="pbmc3k", help="dataset name or path (default pbmc3k)")
    tu.add_argument(
        "--profile",
        default="standard",
        choices=list(PROFILES),
        help="profile whose settings the grid points override (default standard)",
    )
    tu.add_argument(
        "--grid",
        action="append",
        metavar="NAME=V1,V2",
        help="a grid axis (repeatable); default: the generator's own tuning grid",
    )
    tu.add_argument("--budget", help='training budget of every point, in epochs (e.g. "300 epochs")')
    tu.add_argument("--seed", type=int, default=0, help="seed of the fits and of the validation split")
    tu.add_argument("--label-key", help="obs column with cell-type labels (for files given by path)")
    tu.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda"], help="where the fits run (default cpu)"
    )
    tu.add_argument("--out", default="results/tuning", help="where the sweep table goes")
    tu.set_defaults(func=func)


def _status(sub, func: Command) -> None:
    """`bench status`: its flags and help."""
    st = sub.add_parser("status", help="progress of a (detached) run")
    st.add_argument("run_dir", help="run dir of a `bench run` (Slurm runs: also the jobs' states)")
    st.set_defaults(func=func)


def _clean(sub, func: Command) -> None:
    """`bench clean`: its flags and help."""
    cl = sub.add_parser("clean", help="remove containers left by runs whose process died (SIGKILL, a crash)")
    cl.add_argument("run_dir", nargs="?", help="only this run dir's (default: every run dir's)")
    cl.set_defaults(func=func)


SUBCOMMANDS = {
    "run": _run,
    "report": _report,
    "site": _site,
    "list": _list,
    "datasets": _datasets,
    "images": _images,
    "plugins": _plugins,
    "check": _check,
    "baseline": _baseline,
    "tune": _tune,
    "status": _status,
    "clean": _clean,
}


def build_parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """The parser of every sub-command; ``commands``: sub-command name -> the function that runs it
    (bench.cli), set as the parsed arguments' ``func``."""
    p = argparse.ArgumentParser(
        prog="bench",
        description="scgenbench: benchmark generative models of single-cell RNA-seq data "
        "(ACTIVA, scGAN, cscGAN and plugins) with the ACTIVA paper's experiments.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s (scgenbench) {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, add in SUBCOMMANDS.items():
        add(sub, commands[name])
    return p
