"""Provenance written beside every checkpoint and result: resolved config, versions, git SHA, data hashes.

``run_info.json`` is written last, with ``"status": "complete"``; a directory without it (or with another status)
is unfinished, whatever else it holds.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

PACKAGES = ("babyllama", "torch", "transformers", "tokenizers", "accelerate", "numpy", "lm_eval", "optuna")
RUN_INFO = "run_info.json"


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    """SHA of the babyllama source checkout ('+dirty' with uncommitted changes); None outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        r = subprocess.run(["git", "-C", str(here), "rev-parse", "--verify", "-q", "HEAD"], capture_output=True,
                           text=True, timeout=10)
        sha = r.stdout.strip()
        if r.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}


def write_json_atomic(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


def write_run_info(out_dir: str | Path, kind: str, config: dict, status: str = "complete", **extra: Any) -> dict:
    info = {"kind": kind, "status": status, "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "git_sha": git_sha(), "versions": package_versions(), "machine": machine(), "config": config, **extra}
    write_json_atomic(Path(out_dir) / RUN_INFO, info)
    return info


def read_run_info(out_dir: str | Path) -> dict | None:
    p = Path(out_dir) / RUN_INFO
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_complete(out_dir: str | Path) -> bool:
    info = read_run_info(out_dir)
    return bool(info and info.get("status") == "complete")
