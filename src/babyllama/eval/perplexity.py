"""Perplexity per domain on fixed chunks, with bits per word so that models with different tokenizers compare.

Each domain of the dev and test splits of a prepared corpus is encoded with the model's own tokenizer, cut into
non-overlapping ``seq_len`` chunks from offset 0 (the remainder is dropped) and scored: within a chunk, tokens 2..L
are predicted from the ones before. Reported per domain and split: mean CE (nats/token), perplexity ``exp(CE)``,
and bits per word ``sum NLL / ln 2 / words``, where the words are those of the domain's text (whitespace
separated) in proportion to the tokens predicted.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.corpus import load_prepared
from ..special_tokens import EOT
from ..data.dataset import encode_cached


@torch.inference_mode()
def perplexity(model, tokenizer, corpus_dir: str | Path, splits=("dev", "test"), seq_len: int = 128,
               max_tokens: int | None = None, batch_size: int = 32, bf16: bool = False,
               keep_chunks: bool = False) -> dict:
    """Per split and domain: CE, perplexity, bits/word; ``keep_chunks`` adds each chunk's mean CE (for paired
    comparisons of models that share a tokenizer)."""
    model.eval()
    device = next(model.parameters()).device
    cache = Path(corpus_dir) / ".token_cache"
    out: dict = {}
    for split in splits:
        texts = load_prepared(corpus_dir, split)
        rows, tot_nll, tot_n, tot_words = {}, 0.0, 0, 0.0
        for domain, text in texts.items():
            ids, _ = encode_cached(tokenizer, text, cache)
            if max_tokens:
                ids = ids[:max_tokens]
            n_chunks = len(ids) // seq_len
            if n_chunks == 0:
                continue
            chunks = torch.from_numpy(ids[: n_chunks * seq_len].astype("int64")).view(n_chunks, seq_len)
            per_chunk = []
            for b in range(0, n_chunks, batch_size):
                x = chunks[b : b + batch_size].to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = model(input_ids=x, use_cache=False).logits
                tok_nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)),
                                          x[:, 1:].reshape(-1), reduction="none").view(x.size(0), -1)
                per_chunk += tok_nll.sum(1).tolist()
            nll = float(sum(per_chunk))
            n = n_chunks * (seq_len - 1)
            words_all = len(text.replace(EOT, " ").split())
            full_tokens = len(encode_cached(tokenizer, text, cache)[0])
            words = words_all * n / full_tokens
            rows[domain] = {"ce": nll / n, "ppl": math.exp(nll / n), "bpw": nll / math.log(2) / words,
                            "tokens": n, "words": words}
            if keep_chunks:
                rows[domain]["chunk_ce"] = [round(v / (seq_len - 1), 5) for v in per_chunk]
            tot_nll, tot_n, tot_words = tot_nll + nll, tot_n + n, tot_words + words
        if tot_n:
            out[split] = {"domains": rows, "ce": tot_nll / tot_n, "ppl": math.exp(tot_nll / tot_n),
                          "bpw": tot_nll / math.log(2) / tot_words, "tokens": tot_n}
    return out
