"""Entry point of the sandbox probe: ``entry.py fit|generate WORKDIR`` (the scgenbench protocol)."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path


def attempt(action) -> str:
    try:
        action()
    except OSError as exc:
        return f"blocked: {errno.errorcode.get(exc.errno, exc.errno)} ({exc.strerror})"
    return "allowed"


def connect() -> None:
    socket.create_connection(("1.1.1.1", 53), timeout=3).close()


def chown_to_root() -> None:
    Path("/tmp/probe-owned").write_text("x")
    os.chown("/tmp/probe-owned", 0, 0)


def probes(work: Path, outside: str) -> dict:
    result = {
        "network": attempt(connect),
        "interfaces": sorted(os.listdir("/sys/class/net")),
        "root_fs": attempt(lambda: Path("/opt/probe/written-by-probe").write_text("x")),
        "parent_of_work": attempt(lambda: (work / ".." / "escaped-from-work").write_text("x")),
        "input": attempt(lambda: open(work / "train.h5ad", "ab").close()),
        "chown": attempt(chown_to_root),
        "tmp": attempt(lambda: Path("/tmp/scratch").write_text("x")),
        "uid": os.getuid(),
    }
    if outside:
        result["outside"] = attempt(lambda: Path(outside).write_text("escaped"))
    return result


def fit(work: Path, params: dict) -> int:
    result = probes(work, params.get("outside", ""))
    print("probes: " + json.dumps(result), flush=True)
    if params.get("allocate_mb"):
        print(f"allocating {params['allocate_mb']} MB", flush=True)
        blocks = [b"\x01" * (1 << 20) for _ in range(int(params["allocate_mb"]))]
        print(f"allocated {len(blocks)} MB", flush=True)
    if params.get("sleep_s"):
        print(f"sleeping {params['sleep_s']} s", flush=True)
        time.sleep(float(params["sleep_s"]))
    if params.get("require_network") and result["network"] != "allowed":
        print(f"this model needs the network: {result['network']}", file=sys.stderr, flush=True)
        return 4
    (work / "model").mkdir(exist_ok=True)
    (work / "model" / "probes.json").write_text(json.dumps(result))
    (work / "fit.json").write_text(json.dumps({"train_seconds": 0.01, "steps": 1, "probes": result}))
    return 0


def generate(work: Path, spec: dict) -> int:
    import anndata as ad
    import numpy as np

    train = ad.read_h5ad(work / "train.h5ad")
    X = train.X.toarray() if hasattr(train.X, "toarray") else np.asarray(train.X)
    rows = np.random.default_rng(int(spec["seed"])).integers(0, train.n_obs, int(spec["n_cells"]))
    out = ad.AnnData(X=X[rows].astype(np.float32))
    out.var_names = train.var_names
    out.write_h5ad(work / "generated.h5ad")
    return 0


def main() -> int:
    command, work = sys.argv[1], Path(sys.argv[2])
    spec = json.loads((work / "spec.json").read_text())
    if command == "fit":
        return fit(work, spec["params"])
    if command == "generate":
        return generate(work, spec)
    print(f"unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
