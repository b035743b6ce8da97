from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from babyllama.errors import UserError
from babyllama.special_tokens import EOS
from babyllama.data.bpe import train_tokenizer
from babyllama.tokenizer import encode_text, load_tokenizer, tokenizer_hash, vocab_hash
from conftest import TINY_VOCAB


def test_autotokenizer_loads_with_special_tokens(tiny_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<s>", "</s>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert len(tok) == TINY_VOCAB
    ids = tok(" The cat sat.")["input_ids"]
    assert tok.bos_token_id not in ids and tok.decode(ids) == " The cat sat."


def test_encode_text_equals_whole_document_encoding(tiny_tokenizer):
    tokenizer = tiny_tokenizer
    docs = ["\n".join(f"Line {i} of doc {d}, with words." for i in range(700)) for d in range(3)]
    text = EOS.join(docs) + EOS
    got = encode_text(tokenizer, text, lines_per_piece=64)
    want = []
    for d in docs:
        want += tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert got.dtype == np.uint16
    assert got.tolist() == want
    tokenizer(["a truncating call"], truncation=True, max_length=2)  # leaves truncation on in the backend
    assert encode_text(tokenizer, text, lines_per_piece=64).tolist() == want


def test_hashes_distinguish_tokenizers(tiny_prepared, tiny_tokenizer, tmp_path):
    other = train_tokenizer(tiny_prepared, tmp_path / "t", vocab_size=280)
    assert vocab_hash(other) != vocab_hash(tiny_tokenizer)
    assert tokenizer_hash(other) != tokenizer_hash(tiny_tokenizer)
    assert vocab_hash(load_tokenizer(tmp_path / "t")) == vocab_hash(other)
    with pytest.raises(UserError, match="already holds a tokenizer"):
        train_tokenizer(tiny_prepared, tmp_path / "t", vocab_size=280)


def test_tokenizer_is_saved_whole_or_not_at_all(tiny_prepared, tmp_path, monkeypatch):
    """A save that dies half-way leaves no tokenizer.json in OUT (the rerun is not refused), and OUT is never a
    folder of someone else's files."""
    from transformers import PreTrainedTokenizerFast

    def dies_after_first_file(self, save_directory, **kw):
        (tmp_path / "marker").write_text("")
        (Path(save_directory) / "tokenizer.json").write_text("{trunc")
        raise KeyboardInterrupt

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", dies_after_first_file)
    with pytest.raises(KeyboardInterrupt):
        train_tokenizer(tiny_prepared, tmp_path / "out", vocab_size=280)
    assert (tmp_path / "marker").exists() and not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    monkeypatch.undo()
    train_tokenizer(tiny_prepared, tmp_path / "out", vocab_size=280)
    assert load_tokenizer(tmp_path / "out")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match="not empty and holds no tokenizer"):
        train_tokenizer(tiny_prepared, tmp_path / "theirs", vocab_size=280)
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "keep"


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(UserError, match="no tokenizer here"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(UserError, match="cannot load the tokenizer"):
        load_tokenizer(tmp_path)
