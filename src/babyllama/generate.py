"""`babyllama generate MODEL --prompt TEXT`: a sampled continuation, for a quick look at what a model learned."""

from __future__ import annotations

import torch

from .eval.evaluate import load_for_eval


def generate(model_dir: str, prompt: str = "", max_new_tokens: int = 50, temperature: float = 1.0,
             top_p: float = 0.95, seed: int = 0, device: str | None = None) -> str:
    """The prompt and its continuation. Like the scorer, the input starts with the BOS token (EOS if none)."""
    model, tok = load_for_eval(model_dir, device)
    first = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ids = [first] + tok.encode(prompt, add_special_tokens=False)
    x = torch.tensor([ids], device=next(model.parameters()).device)
    torch.manual_seed(seed)
    sample = temperature > 0
    with torch.inference_mode():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens, do_sample=sample,
                             temperature=temperature if sample else None, top_p=top_p if sample else None,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return tok.decode(out[0, 1:], skip_special_tokens=True)
