import json

import pytest

from babyllama.errors import UserError
from babyllama.eval.suites import load_items
from babyllama.eval.tasks import Item, read_minimal_pairs


def test_minimal_pairs_reader_and_errors(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"sentence_good": "A cat.", "sentence_bad": "A cats.", "linguistics_term": "agr"}) +
                 "\n\n" + json.dumps({"sentence_good": "B.", "sentence_bad": "C."}) + "\n")
    items = read_minimal_pairs(f)
    assert items[0] == Item("mine", 0, "", (" A cat.", " A cats."), "agr") and len(items) == 2
    f.write_text('{"sentence_good": "x"}\n')
    with pytest.raises(UserError, match=r"mine.jsonl:1: missing sentence_good or sentence_bad"):
        read_minimal_pairs(f)
    f.write_text('{"sentence_good": "x", "sentence_bad": "y"}\n{oops\n')
    with pytest.raises(UserError, match=r"mine.jsonl:2: not JSON"):
        read_minimal_pairs(f)
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(UserError, match="not UTF-8"):
        read_minimal_pairs(f)
    with pytest.raises(UserError, match="unknown suite"):
        load_items("nonexistent_suite")
