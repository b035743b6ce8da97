import os
import socket
import subprocess
import sys

import pytest

from babyllama.io import atomic_write, clean_stale_temps, read_json, short_hash, write_json, write_text


def _temps(d):
    return [p.name for p in d.iterdir() if ".tmp-" in p.name]


def test_file_written_whole_or_not_at_all(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text('{"a": 2, "trunc')
            raise RuntimeError("killed mid-write")
    assert read_json(target) == {"a": 1} and _temps(tmp_path) == []
    write_text(target, '{"a": 3}')
    assert read_json(target) == {"a": 3}


def test_directory_replaced_whole(tmp_path):
    target = tmp_path / "tokenizer"
    with atomic_write(target, directory=True) as tmp:
        (tmp / "a.json").write_text("1")
        (tmp / "b.json").write_text("2")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target, directory=True) as tmp:
            (tmp / "a.json").write_text("new")
            raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == ["a.json", "b.json"] and (target / "a.json").read_text() == "1"
    with atomic_write(target, directory=True) as tmp:
        (tmp / "c.json").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c.json"] and _temps(tmp_path) == []
    with pytest.raises(FileExistsError):
        with atomic_write(target, directory=True, replace=False) as tmp:
            pass
    assert (target / "c.json").exists()


def test_temps_left_by_a_kill_are_cleaned_by_the_next_write(tmp_path):
    target = tmp_path / "stats.json"
    (tmp_path / ".stats.json.tmp-abc").write_text("half")
    os.mkdir(tmp_path / ".stats.json.tmp-dir")
    (tmp_path / ".other.json.tmp-x").write_text("not ours")
    write_json(target, [1])
    assert _temps(tmp_path) == [".other.json.tmp-x"]
    clean_stale_temps(tmp_path / "other.json")
    assert _temps(tmp_path) == []


def test_a_write_in_progress_in_another_process_is_not_cleaned(tmp_path):
    host = socket.gethostname()
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        live = tmp_path / f".ids.npy.tmp-{host}-{writer.pid}-abc123"
        dead = tmp_path / f".ids.npy.tmp-{host}-{gone.pid}-def456"
        elsewhere = tmp_path / f".ids.npy.tmp-other-host-{gone.pid}-ghi789"
        for p in (live, dead, elsewhere):
            p.write_text("part")
        write_text(tmp_path / "ids.npy", "whole")
        assert sorted(_temps(tmp_path)) == sorted([live.name, elsewhere.name])  # the dead writer's leftover is gone
    finally:
        writer.kill()
        writer.wait()
    clean_stale_temps(tmp_path / "ids.npy")
    assert _temps(tmp_path) == [elsewhere.name]  # another host's PID means nothing here: left alone


def test_read_json_and_short_hash(tmp_path):
    assert read_json(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{")
    assert read_json(tmp_path / "bad.json") is None
    assert short_hash({"b": 1, "a": 2}) == short_hash({"a": 2, "b": 1}) != short_hash({"a": 1, "b": 2})


def test_read_jsonl_numbers_lines_and_names_bad_ones(tmp_path):
    import pytest

    from babyllama.errors import UserError
    from babyllama.io import read_jsonl

    f = tmp_path / "a.jsonl"
    f.write_text('{"x": 1}\n\n{"x": 2}\n')
    assert read_jsonl(f, "each line: an object") == [(1, {"x": 1}), (3, {"x": 2})]
    f.write_text('{"x": 1}\n[1]\n')
    with pytest.raises(UserError, match=r"a\.jsonl:2: not a JSON object; each line: an object"):
        read_jsonl(f, "each line: an object")
    f.write_bytes(b'{"x": "\xff"}\n')
    with pytest.raises(UserError, match=r"a\.jsonl: not UTF-8"):
        read_jsonl(f, "each line: an object")
