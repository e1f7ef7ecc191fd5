"""What a container or process run leaves: its log (to WORKDIR/container.log, the console and a
tail buffer for the error message) and the user-error file an entry point writes. The docker
runner (:mod:`bench.api.docker`) and the container generators' ``process`` backend use it."""

from __future__ import annotations

import collections
import json
from pathlib import Path

# log lines kept for an error message (a failed run, a failed image build)
LOG_TAIL_LINES = 50
# what an entry point writes (with exit 2) for a mistake the user can fix: {"message", "fix"}
USER_ERROR_FILE = "user_error.json"


def user_error(work: Path) -> tuple[str, str] | None:
    """(message, fix) from the entry point's user_error.json, if it wrote one."""
    try:
        data = json.loads((work / USER_ERROR_FILE).read_text())
        return str(data["message"]), str(data.get("fix") or "see the log")
    except (OSError, ValueError, KeyError, TypeError):
        return None


class LogSink:
    """Collects log lines: to WORKDIR/container.log, the console (progress) and a tail buffer."""

    def __init__(self, path: Path, progress: bool):
        self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.progress = progress
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._partial = ""

    def feed(self, text: str) -> None:
        text = self._partial + text
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        self.fh.write(line + "\n")
        self.fh.flush()
        self.tail.append(line)
        if self.progress:
            print(line, flush=True)

    def close(self) -> str:
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        self.fh.close()
        return "\n".join(self.tail)


def interrupted_reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or "interrupted"


# how often a wait for a container or process returns to Python. A signal handler runs only in the
# main thread and only between bytecodes; a signal the kernel hands to another thread (Slurm sends
# SIGCONT, then SIGTERM: with SIGCONT pending on the main thread, SIGTERM goes to another thread)
# does not interrupt a blocking wait, so waits are short and repeated.
POLL_S = 0.5
