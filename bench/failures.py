"""What a failed task means for the user: a one-line reason, and whether running the same command
again can help.

Only failures that can be transient are worth retrying as they are: running out of memory, a
killed process or a Slurm job that ended without a result (preempted, node failure, cancelled). A
task that ran past a limit the user set (``--timeout``, ``--memory-limit``, a Slurm job's time
limit) meets the same limit again: the advice is to raise it. Any other error (a bug, a bad
parameter, invalid output) repeats on the next run: the advice is then to read the task's log and
fix the cause.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

TRANSIENT = re.compile(
    r"timed?[ _-]?out|out[ _-]?of[ _-]?memory|\boom\b|memoryerror|cannot allocate memory|killed|sigkill|"
    r"\b(exit|code|status)\s*(code\s*)?137\b|preempt|node_fail|cancelled|left the queue|deadline",
    re.IGNORECASE,
)
# a limit the user set was reached (the task limit of --timeout, --memory-limit, a Slurm job's time
# limit): the same limit fails the same way again, so the advice is to raise it, not to rerun
LIMIT = re.compile(
    r"exceeded the [\d.e+]+ s task limit|out of memory \(limit [\d.e+]+ GB|timed out after|"
    r"exceeded its time limit \(--timeout\)|^timeout: Slurm job \S+ reached its time limit",
    re.IGNORECASE,
)
NOT_RUN = ("running", "planned", "submitted", "not started")
_LOG_SUFFIX = re.compile(r"; traceback in \S+$", re.MULTILINE)


# what is not the error's type and message: the log path the runner appends, the source location
# ``(file.py:123)`` and any path inside the message (a run dir named "timeout" says nothing)
_LOCATION = re.compile(r"\([^()\s]+:\d+\)")
_PATH = re.compile(r"(?:[A-Za-z]:)?[\w.~@%+-]*(?:[/\\][\w.~@%+:-]*)+")


def error_text(error: str | None) -> str:
    """An error's type and message without the file paths in it (what :func:`is_transient` reads)."""
    text = _LOG_SUFFIX.sub("", str(error or "").strip())
    text = _LOCATION.sub(" ", text)
    return _PATH.sub(" ", text)


def is_limit(error: str | None) -> bool:
    """True when the task ran past a limit the user set (time or memory): it repeats as is."""
    return bool(error) and LIMIT.search(error_text(error)) is not None


def is_transient(error: str | None) -> bool:
    """True when the error can go away on its own (OOM, killed, Slurm job lost), judged by its type
    and message only, never by a path in it; a limit the user set (:func:`is_limit`) is not."""
    return bool(error) and not is_limit(error) and TRANSIENT.search(error_text(error)) is not None


def one_line(error: str | None, width: int = 200) -> str:
    """The first non-empty line of an error message, at most ``width`` characters."""
    line = next((x.strip() for x in str(error or "").splitlines() if x.strip()), "no error message")
    return line if len(line) <= width else line[: width - 1] + "…"


def reason(error: str | None) -> str:
    """:func:`one_line` without the per-task log path (``; traceback in .../task.log``), so equal
    errors of several seeds read as one reason."""
    first = next((x.strip() for x in str(error or "").splitlines() if x.strip()), "")
    return one_line(_LOG_SUFFIX.sub("", first) or error)


def _seeds(seeds: Iterable[int]) -> str:
    seeds = sorted(int(s) for s in seeds)
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def failure_notes(planned, dataset: str, experiment: str) -> list[str]:
    """One line per (model, reason) for the planned tasks of ``dataset``/``experiment`` that did not
    finish: ``"activa: failed on seed 1 of 3: <reason>"``; tasks that never ended (interrupted,
    still queued) say so."""
    if planned is None or planned.empty:
        return []
    sub = planned[(planned.dataset == dataset) & (planned.experiment == experiment)]
    notes = []
    for model in sorted(set(sub.model), key=lambda m: (m == "real", m)):
        tasks = sub[sub.model == model]
        n = len(tasks)
        bad = tasks[tasks.status != "done"]
        by_reason: dict[str, list[int]] = {}
        for r in bad.itertuples():
            why = reason(r.error) if r.status == "failed" else f"not finished ({r.status})"
            by_reason.setdefault(why, []).append(int(r.seed))
        for why, seeds in by_reason.items():
            verb = "failed on" if not why.startswith("not finished") else "missing"
            notes.append(f"{model}: {verb} {_seeds(seeds)} of {n}: {why}")
    return notes


def retry_advice(failed: list[tuple[str, str | None]], run_dir: str | Path) -> list[str]:
    """Advice lines for failed tasks given as (label, error): retry only the transient ones."""
    limited = [label for label, error in failed if is_limit(error)]
    transient = [label for label, error in failed if is_transient(error)]
    lasting = [label for label, error in failed if not is_transient(error) and not is_limit(error)]
    lines = []
    if limited:
        lines.append(
            f"{len(limited)} task(s) ran past a time or memory limit ({', '.join(limited[:5])}"
            f"{', ...' if len(limited) > 5 else ''}): the same limit stops them again; raise the limit "
            "each error names (--timeout, --memory-limit; a Slurm job's --time: [executor] time_min) "
            "and run again"
        )
    if transient:
        lines.append(
            f"{len(transient)} task(s) failed in a way that can be transient (timeout, out of memory, "
            "killed): run the same command again to retry them"
        )
    if lasting:
        lines.append(
            f"{len(lasting)} task(s) failed with an error that will repeat as is "
            f"({', '.join(lasting[:5])}{', ...' if len(lasting) > 5 else ''}): read each task's error and log "
            f"with `bench status {run_dir}` (work files under {Path(run_dir) / 'tasks'}/KEY) "
            "and fix the cause before running again"
        )
    return lines
