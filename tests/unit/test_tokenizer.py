import numpy as np
import pytest
from transformers import AutoTokenizer

from babyllama.errors import UserError
from babyllama.tokenizer import EOS, encode_text, load_tokenizer, tokenizer_hash, train_tokenizer, vocab_hash


def test_autotokenizer_loads_with_special_tokens(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<s>", "</s>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert len(tok) == 512
    ids = tok(" The cat sat.")["input_ids"]
    assert tok.bos_token_id not in ids and tok.decode(ids) == " The cat sat."


def test_encode_text_equals_whole_document_encoding(tokenizer):
    docs = ["\n".join(f"Line {i} of doc {d}, with words." for i in range(700)) for d in range(3)]
    text = EOS.join(docs) + EOS
    got = encode_text(tokenizer, text, lines_per_piece=64)
    want = []
    for d in docs:
        want += tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert got.dtype == np.uint16
    assert got.tolist() == want


def test_hashes_distinguish_tokenizers(prepared, tokenizer, tmp_path):
    other = train_tokenizer(prepared, tmp_path / "t", vocab_size=400)
    assert vocab_hash(other) != vocab_hash(tokenizer)
    assert tokenizer_hash(other) != tokenizer_hash(tokenizer)
    assert vocab_hash(load_tokenizer(tmp_path / "t")) == vocab_hash(other)
    with pytest.raises(UserError, match="already holds a tokenizer"):
        train_tokenizer(prepared, tmp_path / "t", vocab_size=400)


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(UserError, match="no tokenizer here"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(UserError, match="cannot load the tokenizer"):
        load_tokenizer(tmp_path)
