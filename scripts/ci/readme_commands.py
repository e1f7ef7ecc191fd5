"""Print the commands of one marked code block of README.md, one per line, exactly as written.

A block is marked by an HTML comment on the line before its fence, invisible on the rendered page:

    <!-- ci: setup -->
    ```bash
    bash scripts/setup.sh --services   # comments after the command are dropped
    ```

.ci/run runs each block's commands exactly as written; tests/test_ci_readme.py reads the blocks with
this script and fails when .ci/run and the README differ. Standard library only.

    python3 scripts/ci/readme_commands.py setup        # prints the setup command(s)
    python3 scripts/ci/readme_commands.py --list       # the block names
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
MARK = re.compile(r"^<!--\s*ci:\s*([\w-]+)\s*-->\s*$")
FENCE = re.compile(r"^```")


def blocks(text: str) -> dict[str, list[str]]:
    """``{name: [command, ...]}`` of every marked block: each non-blank line without its comment."""
    out: dict[str, list[str]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = MARK.match(line)
        if not m:
            continue
        name = m.group(1)
        if name in out:
            raise SystemExit(f"README.md: block '{name}' is marked twice")
        if i + 1 >= len(lines) or not FENCE.match(lines[i + 1]):
            raise SystemExit(f"README.md:{i + 1}: the mark '{name}' is not followed by a code fence")
        commands = []
        for body in lines[i + 2 :]:
            if FENCE.match(body):
                break
            command = strip_comment(body).strip()
            if command:
                commands.append(command)
        out[name] = commands
    return out


def strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a # inside quotes stays)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: leave the line as it is
        return line
    if not words:
        return ""
    # keep the user's own spelling: cut the raw line where the comment starts
    cut = line.find(" #")
    while cut != -1:
        head = line[:cut]
        try:
            if shlex.split(head) == words:
                return head.rstrip()
        except ValueError:
            pass
        cut = line.find(" #", cut + 1)
    return line.rstrip()


def main(argv: list[str]) -> int:
    found = blocks(README.read_text())
    if argv == ["--list"]:
        print("\n".join(found))
        return 0
    if len(argv) != 1 or argv[0] not in found:
        print(f"usage: readme_commands.py NAME | --list (marked blocks: {', '.join(found)})", file=sys.stderr)
        return 2
    print("\n".join(found[argv[0]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
