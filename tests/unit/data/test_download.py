"""The downloader against a local HTTP server (no internet here) that honours Range requests."""

import hashlib
import http.server
import io
import json
import threading
import zipfile

import pytest

from babyllama.data.download import download
from babyllama.errors import UserError


class RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    ranges_seen: list = []

    def do_GET(self):  # noqa: N802
        data, start = self.payload, 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.ranges_seen.append(start)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("babylm_data/babylm_10M/cbt.train", "hello world .\n" * 2000)
        z.writestr("babylm_data/babylm_dev/cbt.dev", "dev text .\n")
    RangeHandler.payload = buf.getvalue()
    RangeHandler.ranges_seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/data.zip", RangeHandler
    srv.shutdown()


def test_download_verifies_and_unpacks(server, tmp_path, capsys):
    url, h = server
    sha = hashlib.sha256(h.payload).hexdigest()
    dest = download("babylm-2023", tmp_path / "d", url=url, sha256=sha)
    assert (dest / "babylm_data/babylm_10M/cbt.train").read_text().startswith("hello world")
    assert not list(dest.glob("*.part")) and not [p for p in dest.iterdir() if ".tmp-" in p.name]
    assert f"sha256 {sha}: verified" in capsys.readouterr().out
    assert json.loads((dest / "download.json").read_text())["verified"] is True


def test_download_without_a_hash_says_nothing_was_verified(server, tmp_path, capsys):
    """The registry pins no hash: the output must not claim a verification that did not happen."""
    url, h = server
    dest = download("babylm-2023", tmp_path / "d", url=url)
    out = capsys.readouterr().out
    sha = hashlib.sha256(h.payload).hexdigest()
    assert f"sha256 {sha}: NOT verified" in out and "verified against" not in out
    assert json.loads((dest / "download.json").read_text()) == {"name": "babylm-2023", "url": url, "sha256": sha,
                                                                 "verified": False}


def test_download_resumes_partial_file(server, tmp_path):
    url, h = server
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "babylm-2023.zip.part").write_bytes(h.payload[:100])
    download("babylm-2023", dest, url=url, sha256=hashlib.sha256(h.payload).hexdigest())
    assert h.ranges_seen == [100]
    assert (dest / "babylm_data/babylm_dev/cbt.dev").exists()


def test_download_rejects_bad_hash(server, tmp_path):
    url, _ = server
    with pytest.raises(UserError, match="does not match"):
        download("babylm-2023", tmp_path / "d", url=url, sha256="0" * 64)
    assert not (tmp_path / "d" / "babylm_data").exists()
    assert (tmp_path / "d" / "babylm-2023.zip.bad").exists()


def test_download_errors(tmp_path):
    with pytest.raises(UserError, match="unknown data set"):
        download("nope", tmp_path)
    with pytest.raises(UserError, match="cannot connect"):
        download("babylm-2023", tmp_path / "x", url="http://127.0.0.1:9/none.zip")
