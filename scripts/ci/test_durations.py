"""Write tests/durations.json: the seconds each pytest-xdist group of the suite took, from a JUnit XML.

    python -m pytest -n 1 --dist loadgroup --junitxml=/tmp/junit.xml
    python scripts/ci/test_durations.py /tmp/junit.xml          # writes tests/durations.json

tests/conftest.py runs the groups longest first from this file, so that in ``-n 2`` no long group starts
when the other worker is nearly done. Under ``--dist loadgroup`` every test's name ends in ``@GROUP``;
a group's seconds are the sum of its tests' (setup, call and teardown, as the JUnit XML records them; a
module fixture counts in its first test). Measure on an otherwise idle machine: the order, not the
absolute seconds, is what the file is for.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "tests" / "durations.json"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: test_durations.py JUNIT_XML", file=sys.stderr)
        return 2
    seconds: dict[str, float] = defaultdict(float)
    try:
        root = ET.parse(argv[0]).getroot()
    except (OSError, ET.ParseError) as exc:
        print(f"test_durations.py: cannot read {argv[0]}: {exc}", file=sys.stderr)
        return 2
    for case in root.iter("testcase"):
        name = case.get("name", "")
        if "@" not in name:
            print(
                f"{argv[0]}: test {name!r} has no @GROUP: run pytest with --dist loadgroup", file=sys.stderr
            )
            return 2
        seconds[name.rsplit("@", 1)[1]] += float(case.get("time", 0))
    ordered = dict(sorted(((g, round(s, 1)) for g, s in seconds.items()), key=lambda kv: -kv[1]))
    OUT.write_text(json.dumps(ordered, indent=1) + "\n")
    print(f"{OUT}: {len(ordered)} groups, {sum(ordered.values()):.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
