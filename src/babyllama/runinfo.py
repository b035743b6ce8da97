"""Provenance written beside every checkpoint and result: resolved config, versions, git SHA, data hashes.

``run_info.json`` is written last, with ``"status": "complete"``; a directory without it (or with another status)
is unfinished, whatever else it holds. Inside a run directory its paths are written as ``${run_dir}/...``, so the
run can be moved or copied.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from .config import location_free
from .io import read_json, write_json

PACKAGES = ("babyllama", "torch", "transformers", "tokenizers", "accelerate", "numpy", "lm_eval")
RUN_INFO = "run_info.json"


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


def write_run_info(out_dir: str | Path, kind: str, config: dict, status: str = "complete",
                   run_dir: str | Path | None = None, **extra: Any) -> dict:
    """Write ``run_info.json`` (last: it marks the directory finished); paths inside ``run_dir`` location-free."""
    info = {"kind": kind, "status": status, "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "git_sha": git_sha(), "versions": package_versions(), "machine": machine(), "config": config, **extra}
    info = location_free(info, run_dir)
    write_json(Path(out_dir) / RUN_INFO, info)
    return info


def read_run_info(out_dir: str | Path) -> dict | None:
    info = read_json(Path(out_dir) / RUN_INFO)
    return info if isinstance(info, dict) else None


def is_complete(out_dir: str | Path) -> bool:
    info = read_run_info(out_dir)
    return bool(info and info.get("status") == "complete")
