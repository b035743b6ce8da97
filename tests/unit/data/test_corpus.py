import json

import pytest

from babyllama.data.corpus import EOT, find_layout, load_prepared, prepare, stats_table
from babyllama.errors import UserError


def _write(root, rel, text):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")


def test_layout_2023(tmp_path):
    for d in ("babylm_10M", "babylm_100M"):
        _write(tmp_path, f"{d}/cbt.train", "hello .\n")
    _write(tmp_path, "babylm_dev/cbt.dev", "dev .\n")
    _write(tmp_path, "babylm_test/qed.test", "test .\n")
    c = find_layout(tmp_path)
    assert c.layout == "2023"
    assert c.files["train"]["cbt"][0].parent.name == "babylm_10M"
    assert find_layout(tmp_path, "100M").files["train"]["cbt"][0].parent.name == "babylm_100M"
    assert set(c.files) == {"train", "dev", "test"}


def test_layout_2024(tmp_path):
    _write(tmp_path, "train_10M/childes.train", "a\n")
    _write(tmp_path, "train_10M/simple_wiki.train", "b\n")
    _write(tmp_path, "dev/childes.dev", "c\n")
    c = find_layout(tmp_path)
    assert c.layout == "2024" and c.domains == ["childes", "simple_wiki"]


def test_layout_plain_and_text_folder(tmp_path):
    _write(tmp_path, "plain/train/x.train", "a b\n")
    assert find_layout(tmp_path / "plain").layout == "plain"
    _write(tmp_path, "mine/one.txt", "\n".join(f"line {i} ." for i in range(40)))
    c = find_layout(tmp_path / "mine")
    assert c.layout == "text" and c.domains == ["mine"]
    stats = prepare(tmp_path / "mine", tmp_path / "out")
    assert stats["splits"]["train"]["mine"]["lines"] == 38
    assert stats["splits"]["dev"]["mine"]["lines"] == 2


def test_missing_and_empty_corpus(tmp_path):
    with pytest.raises(UserError, match="not found"):
        find_layout(tmp_path / "nope")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.train").write_text("")
    with pytest.raises(UserError, match="empty"):
        find_layout(tmp_path)
    with pytest.raises(UserError, match="no corpus found"):
        find_layout(tmp_path / "train")


def test_non_utf8_names_file(tmp_path):
    _write(tmp_path, "train/a.train", "ok\n")
    (tmp_path / "train" / "b.train").write_bytes(b"caf\xe9\n")
    with pytest.raises(UserError, match=r"b\.train: not UTF-8.*offset 3"):
        prepare(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]


def test_prepare_writes_clean_docs_and_stats(tmp_path):
    _write(tmp_path, "src/train/cbt.train", "_BOOK_TITLE_ : x\nI don 't know .\n_BOOK_TITLE_ : y\nHe 's here\n")
    _write(tmp_path, "src/dev/cbt.dev", "Yes  .\n")
    stats = prepare(tmp_path / "src", tmp_path / "out")
    text = (tmp_path / "out/train/cbt.txt").read_text()
    assert text == f"I don't know.{EOT}He's here{EOT}"
    assert stats["splits"]["train"]["cbt"] == {"words": 5, "lines": 2, "documents": 2}
    assert json.loads((tmp_path / "out/stats.json").read_text())["splits"]["dev"]["cbt"]["words"] == 1
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in stats_table(stats).splitlines()}
    assert rows["cbt"] == ["5", "2", "1", "1"]  # train words, train lines, dev words, dev lines
    assert rows["**total**"] == ["**5**", "**2**", "**1**", "**1**"]
    assert load_prepared(tmp_path / "out", "train") == {"cbt": text}


def test_prepare_never_overwrites_foreign_dirs(tmp_path):
    _write(tmp_path, "src/train/a.train", "x\n")
    _write(tmp_path, "mine/precious.txt", "keep me")
    with pytest.raises(UserError, match="not empty"):
        prepare(tmp_path / "src", tmp_path / "mine")
    with pytest.raises(UserError, match="not a prepared corpus"):
        prepare(tmp_path / "src", tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine/precious.txt").read_text() == "keep me"
    prepare(tmp_path / "src", tmp_path / "out")
    prepare(tmp_path / "src", tmp_path / "out", overwrite=True)  # our own output may be replaced


def test_load_prepared_errors(tmp_path):
    with pytest.raises(UserError, match="not a prepared corpus"):
        load_prepared(tmp_path, "train")


def test_a_killed_prepare_leaves_no_temp_folder_after_the_next_one(tmp_path):
    _write(tmp_path, "src/train/a.train", "x .\n")
    (tmp_path / ".out.tmp-killed").mkdir()  # what a SIGKILL in the middle of a prepare leaves
    (tmp_path / ".out.tmp-killed" / "stats.json").write_text("{}")
    prepare(tmp_path / "src", tmp_path / "out")
    assert (tmp_path / "out" / "stats.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]
