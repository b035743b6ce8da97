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
from .io import LOCK_FILE, read_json, sha256_file, write_json

PACKAGES = ("babyllama", "torch", "transformers", "tokenizers", "accelerate", "numpy", "lm_eval")
RUN_INFO = "run_info.json"
# the result files of a stage directory, beside its run_info.json (babyllama.runner.kinds assigns them to kinds)
METRICS_FILE = "metrics.json"  # a training run's metrics
EVAL_FILE = "eval.json"  # an eval stage's scores
FINETUNE_FILE = "finetune.json"  # a finetune stage's scores


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


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import torch

    from .hardware import cpu_has_native_bf16

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []
    return {"platform": platform.platform(), "processor": platform.processor(), "cpu": cpu_model(),
            "cpus": os.cpu_count(), "cpu_native_bf16": cpu_has_native_bf16(), "torch_threads": torch.get_num_threads(),
            "cuda": bool(gpus), "gpus": gpus}


def hardware_line(m: dict | None) -> str:
    """``2 x Intel Xeon (bf16 native)`` / ``1 x NVIDIA H200``: what a stage ran on, for the report."""
    if not m:
        return "-"
    if m.get("gpus"):
        return f"{len(m['gpus'])} x {m['gpus'][0]}"
    bf16 = {True: ", bf16 native", False: ", no native bf16"}.get(m.get("cpu_native_bf16"), "")
    return f"{m.get('cpus')} cores {m.get('cpu') or m.get('processor') or 'CPU'}{bf16}"


def _manifest_files(out_dir: Path) -> list[Path]:
    """What a finished directory holds as its result: not checkpoints, logs, caches or our own bookkeeping."""
    skip_dirs = {"runs"}
    out = []
    for p in sorted(out_dir.rglob("*")):
        rel = p.relative_to(out_dir)
        if not p.is_file() or p.name in (RUN_INFO, LOCK_FILE):
            continue
        if rel.parts[0] in skip_dirs or rel.parts[0].startswith("checkpoint-") or any(
                part.startswith(".") for part in rel.parts):
            continue
        out.append(p)
    return out


def manifest(out_dir: str | Path) -> dict[str, list]:
    """{relative path: [size, sha256]} of every result file of a directory."""
    out_dir = Path(out_dir)
    return {str(p.relative_to(out_dir)): [p.stat().st_size, sha256_file(p)] for p in _manifest_files(out_dir)}


def manifest_problem(out_dir: str | Path) -> str | None:
    """The first file of a finished directory that differs from its manifest ("file: why"), or None."""
    out_dir = Path(out_dir)
    recorded = (read_run_info(out_dir) or {}).get("manifest")
    if recorded is None:
        return None  # a run_info.json without a manifest: nothing to compare
    for rel, (size, digest) in recorded.items():
        f = out_dir / rel
        if not f.is_file():
            return f"{f} is missing"
        if f.stat().st_size != size:
            return f"{f} has {f.stat().st_size} bytes, {size} were written"
        if sha256_file(f) != digest:
            return f"{f} differs from what was written (sha256)"
    return None


def write_run_info(out_dir: str | Path, kind: str, config: dict, status: str = "complete",
                   run_dir: str | Path | None = None, with_manifest: bool = True, **extra: Any) -> dict:
    """Write ``run_info.json`` (last: it marks the directory finished) with the manifest of the directory's result
    files; paths inside ``run_dir`` location-free."""
    info = {"kind": kind, "status": status, "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "git_sha": git_sha(), "versions": package_versions(), "machine": machine(), "config": config, **extra}
    if with_manifest:
        info["manifest"] = manifest(out_dir)
    info = location_free(info, run_dir)
    write_json(Path(out_dir) / RUN_INFO, info)
    return info


def read_run_info(out_dir: str | Path) -> dict | None:
    info = read_json(Path(out_dir) / RUN_INFO)
    return info if isinstance(info, dict) else None


def is_complete(out_dir: str | Path) -> bool:
    info = read_run_info(out_dir)
    return bool(info and info.get("status") == "complete")
