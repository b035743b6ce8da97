"""``babyllama data download NAME DEST``: official BabyLM releases and BLiMP.

Downloads go to ``DEST/<file>.part`` and resume with an HTTP Range request when interrupted. The archive's sha256 is
computed, printed and recorded in ``DEST/download.json``; it is *verified* only against a hash given with
``--sha256`` (the registry pins none yet), and the output says which of the two happened. Each top-level entry of the
archive is unpacked through a temporary directory and renamed into DEST, so an interrupted unpack never leaves a
half-unpacked corpus.

No download is needed when the data is already on disk: pass ``--data-root`` to the other commands instead.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import UserError
from ..io import atomic_write, sha256_file, write_json


@dataclass(frozen=True)
class Source:
    url: str
    sha256: str | None  # None: not pinned; the archive's hash is printed and recorded, nothing is verified
    what: str


# The expected hashes of the official archives could not be computed where this registry was written (no internet);
# pass --sha256 to pin one, or see DEST/download.json after a first download.
SOURCES: dict[str, Source] = {
    "babylm-2023": Source("https://github.com/babylm/babylm.github.io/raw/main/babylm_data.zip", None,
                          "BabyLM 2023: babylm_10M, babylm_100M, babylm_dev, babylm_test (10 domains)"),
    "babylm-2024-10M": Source("https://osf.io/download/y7djq/", None, "BabyLM 2024/2025 train_10M (6 domains)"),
    "babylm-2024-100M": Source("https://osf.io/download/ywea7/", None, "BabyLM 2024/2025 train_100M"),
    "babylm-2024-dev": Source("https://osf.io/download/uyd7v/", None, "BabyLM 2024/2025 dev"),
    "babylm-2024-test": Source("https://osf.io/download/ftwu3/", None, "BabyLM 2024/2025 test"),
    "blimp": Source("https://github.com/alexwarstadt/blimp/archive/refs/heads/master.zip", None,
                    "BLiMP, 67 paradigms (data/*.jsonl)"),
}


def list_sources() -> str:
    return "\n".join(f"{n:<18} {s.what}\n{'':<18} {s.url}" for n, s in SOURCES.items())


def fetch(url: str, dest: Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, resuming from ``dest.part`` if present; progress bar on stderr."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part file is already whole
            os.replace(part, dest)
            return dest
        raise UserError(f"{url}: HTTP {e.code}; check the name or pass --url with a mirror") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"{url}: cannot connect ({reason}); check the network, or pass --data-root to data "
                        "already on disk") from None
    with resp:
        resumed = have and resp.status == 206
        mode = "ab" if resumed else "wb"
        total = resp.length + (have if resumed else 0) if resp.length is not None else None
        with open(part, mode) as f, tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True,
                                         desc=dest.name) as bar:
            while chunk := resp.read(1 << 16):
                f.write(chunk)
                bar.update(len(chunk))
    os.replace(part, dest)
    return dest


def download(name: str, dest: str | Path, url: str | None = None, sha256: str | None = None) -> Path:
    """Download and unpack a registered data set (or ``url``) into ``dest``; returns ``dest``."""
    if name not in SOURCES and not url:
        raise UserError(f"unknown data set '{name}'; choose one of: {', '.join(SOURCES)} (or pass --url)")
    src = SOURCES.get(name, Source(url or "", None, name))
    url = url or src.url
    expected = (sha256 or src.sha256 or "").lower() or None
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"{name}.zip"
    if not archive.exists():
        fetch(url, archive)
    got = sha256_file(archive)
    if expected and got != expected:
        bad = archive.with_name(archive.name + ".bad")
        os.replace(archive, bad)
        raise UserError(f"{archive}: sha256 {got[:16]}... does not match the expected {expected[:16]}...; "
                        f"moved it to {bad.name}; run the command again to download afresh")
    if expected:
        print(f"sha256 {got}: verified against --sha256")
    else:
        print(f"sha256 {got}: NOT verified (no expected hash known; pass --sha256 {got} to verify later downloads)")
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise UserError(f"{archive}: not a zip archive; delete it and download again") from None
    with zf:
        _unpack(zf, archive, dest)
    write_json(dest / "download.json", {"name": name, "url": url, "sha256": got, "verified": bool(expected)})
    return dest


def _unpack(zf: zipfile.ZipFile, archive: Path, dest: Path) -> None:
    """Each top-level entry of the archive into ``dest`` through a temporary sibling, renamed when whole."""
    members = [m for m in zf.infolist() if m.filename.split("/")[0] != "__MACOSX"]
    for m in members:
        if m.filename.startswith("/") or ".." in Path(m.filename).parts:
            raise UserError(f"{archive}: unsafe path '{m.filename}' in the archive; refusing to unpack it")
    tops = sorted({m.filename.split("/")[0] for m in members})
    for top in tops:
        target = dest / top
        if target.exists() and not (dest / "download.json").is_file():
            raise UserError(f"{target} exists and was not downloaded by babyllama; choose an empty DEST")
    for top in tops:
        mine = [m for m in members if m.filename.split("/")[0] == top]
        is_dir = any(m.filename != top for m in mine)
        with atomic_write(dest / top, directory=is_dir) as tmp:
            for m in mine:
                rel = Path(m.filename).relative_to(top) if is_dir else None
                out = tmp / rel if is_dir else tmp
                if m.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(out, "wb") as f:
                    shutil.copyfileobj(src, f)
