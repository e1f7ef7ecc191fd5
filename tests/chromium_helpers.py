"""Headless Chromium checks shared by the report and the site tests: the document's width against
the window's (horizontal overflow), the links of a page, and the requests it would make."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

# appended to a copy of the page: writes the widths into the DOM that --dump-dom returns
PROBE = (
    "<script>window.addEventListener('load', () => {const d = document.documentElement;"
    "const p = document.createElement('pre'); p.id = 'probe-widths';"
    "p.textContent = d.scrollWidth + ' ' + d.clientWidth; document.body.appendChild(p);});</script>"
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def widths(exe: str, page: Path, width: int, tmp: Path) -> tuple[int, int]:
    """(document scroll width, viewport width) of ``page`` in a window ``width`` px wide."""
    probe = page.with_name(f".probe-{width}-{page.name}")
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        out = subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--window-size={width},900",
             "--virtual-time-budget=5000", "--dump-dom", probe.resolve().as_uri()],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    finally:
        probe.unlink()
    m = re.search(r'id="probe-widths">(\d+) (\d+)<', out.stdout)
    assert m, out.stderr[-2000:]
    return int(m.group(1)), int(m.group(2))


def screenshot(exe: str, page: Path, shot: Path, tmp: Path, size: str = "1400,2400") -> Path:
    shot.parent.mkdir(parents=True, exist_ok=True)
    cap = subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--screenshot={shot}", f"--window-size={size}",
         "--hide-scrollbars", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert cap.returncode == 0 and shot.is_file(), cap.stderr[-2000:]
    return shot


def external_refs(page: str) -> list[str]:
    """Every src/href/url() of a page that would reach the network."""
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)["\']', page) + re.findall(r"url\(([^)]*)\)", page)
    return [r for r in refs if re.match(r"\s*(https?:)?//", r)]
