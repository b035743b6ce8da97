"""Log-likelihood scoring exactly as lm-evaluation-harness (0.4.x, ``HFLM``) does it, but faster.

Encoding (``encode``) mirrors ``TemplateLM.loglikelihood`` / ``_encode_pair``:

* empty context: the continuation is encoded without special tokens and conditioned on one prefix token, the
  tokenizer's BOS (EOS if it has none); if the continuation already starts with that token, its first token is
  the context instead;
* otherwise trailing spaces move from the context to the continuation, ``context + continuation`` is encoded
  whole, and the continuation is what follows the context's own encoding.

Scoring: lm-eval feeds each ``(context + continuation)[-(max_len + 1):][:-1]`` in its own right-padded row,
takes the log-probability of each continuation token and sums them per sequence. Both layouts here compute
those same sums:

* **prefix tree** (default, ``Scorer(tree=True)``): the distinct inputs, sorted, are merged into tries of at most
  ``ROW_TOKENS`` nodes, one trie per row in depth-first order; a 4D attention mask lets each node see only its
  ancestors, and its position id is its depth, so every node computes exactly what the same token computes in a
  row of its own. A prefix shared by several sentences (a minimal pair up to the word where its sentences part,
  template openings across pairs) runs once, and the distribution at a node serves every sentence through it.
  The output layer runs once per node that some sentence needs, in row blocks, with a log-softmax over
  cache-sized slices. The sums agree with lm-eval's to float rounding, which could only decide a pair whose two
  sentences score within that of each other: ``score_items`` re-scores every pair within ``TIE_MARGIN`` nats in
  the padded layout, so decisions stay lm-eval's. (How many positions this saves, how large the rounding is and how
  many pairs are re-scored: benchmarks/README.md.)
  Whether a model takes the 4D mask and position ids correctly is checked once against the padded layout
  (``tree_ok``); a model that does not is scored padded.
* **padded** (``tree=False``, ``babyllama eval --padded``): lm-eval's layout and arithmetic (full
  ``log_softmax``, gather, sum), batched longest first.

Either way each distinct token sequence is scored once (BLiMP repeats sentences across pairs), the continuations
are tokenized in one batched call, inference mode, and the model stays loaded across suites.

``bf16=True`` runs the model under bf16 autocast (the log-probabilities still in fp32); in the padded layout it
also runs the output layer only on the continuation positions (``split_head``), in row blocks, which needs no
(batch, width, vocab) tensor. Near-ties are not re-scored in bf16: its decisions
are not meant to be lm-eval's, and their agreement is measured by ``benchmarks/eval_blimp.py``.

``exact_bf16=True`` (``eval.precision: exact_bf16``, the default where bf16 is native) ranks every item in bf16 and
ranks again in fp32 each item whose two best bf16 scores are within ``bf16_bound`` of each other: the rounding
bf16 can add to a summed log-probability, taken as ``BF16_ERROR_FACTOR x 2^-8 x |sum|`` per option, plus
``TIE_MARGIN``. An item outside the bound keeps the ranking bf16 gave it, which fp32 would give too; the decisions
are fp32's (and lm-eval's) while most items never run in fp32. Scores used as values (wug's probabilities,
reading's surprisals, perplexity) are fp32 in this mode. The headroom of the factor on every suite and shape, the
share ranked again and the speed: ``benchmarks/exact_bf16.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .tasks import Item


def prefix_token_id(tokenizer) -> int:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def config_context(config) -> int | None:
    """The context size a model config states, in lm-eval's order of attributes; None when it states none."""
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        v = getattr(config, attr, None)
        if v:
            return int(v)
    return None


def max_length(model, tokenizer) -> int:
    """lm-eval's resolution: the model config's context size, else the tokenizer's, else 2048."""
    ctx = config_context(model.config)
    if ctx:
        return ctx
    ml = getattr(tokenizer, "model_max_length", None)
    return int(ml) if ml and ml < 1e9 else 2048


def _prefixed(tokenizer, cont: list[int]) -> tuple[list[int], list[int]]:
    """An empty context's continuation ids conditioned on the prefix token (or on their own first token, if that
    is the prefix token already)."""
    p = prefix_token_id(tokenizer)
    return ([p], cont) if not cont or p != cont[0] else (cont[:1], cont[1:])


def encode(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    if context == "":
        return _prefixed(tokenizer, tokenizer.encode(continuation, add_special_tokens=False))
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return ctx, whole[len(ctx):]


def encode_many(tokenizer, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """``encode`` for many (context, continuation) pairs. The continuations of empty contexts (all of BLiMP) are
    tokenized once per distinct string, in one batched call of the fast tokenizer (the same ids as one call per
    string, several times faster); pairs with a context go through ``encode``."""
    texts = list(dict.fromkeys(cont for ctx, cont in pairs if ctx == ""))
    backend = getattr(tokenizer, "backend_tokenizer", None)  # the Rust tokenizer: no per-string Python wrapping
    enc = ([e.ids for e in backend.encode_batch(texts, add_special_tokens=False)] if backend is not None
           else tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else []
    ids = dict(zip(texts, enc))
    return [encode(tokenizer, ctx, cont) if ctx else _prefixed(tokenizer, list(ids[cont])) for ctx, cont in pairs]


ROW_TOKENS = 256  # prefix-tree nodes per row (attention over a row costs ~ row_tokens per node)
TIE_MARGIN = 1e-3  # nats, far above the rounding measured: pairs this close are re-scored in lm-eval's layout
# exact bf16: a sentence's summed log-probability in bf16 is taken to be off by at most BF16_ERROR_FACTOR x u x
# |its sum| (u = 2^-8, bf16's unit roundoff: every matmul rounds its inputs and outputs to 8 significant bits, and
# the error a token's log-probability carries grows with its size); two options are ranked in fp32 again when their
# bf16 margin is within the sum of their two bounds (+ TIE_MARGIN). The factor holds with room to spare on every
# suite and shape measured (benchmarks/README.md, "Exact bf16 scoring").
BF16_UNIT_ROUNDOFF = 2.0**-8
BF16_ERROR_FACTOR = 1.0
HEAD_BLOCK = 512  # output-layer rows per matmul
SOFTMAX_BLOCK = 128  # rows per log-softmax within a block (a 128 x vocab slice stays in cache)


def model_input(ctx: Sequence[int], cont: Sequence[int], max_len: int) -> list[int]:
    """What lm-eval feeds for a request: ``(context + continuation)[-(max_len + 1):][:-1]``."""
    return list(ctx + cont)[-(max_len + 1):][:-1]

# model types whose causal-LM logits are exactly ``get_output_embeddings()(base_model(ids).last_hidden_state)``
# (no scaling, soft-capping or extra projection in between); any other model takes the full path.
SPLIT_HEAD_TYPES = {"llama", "gpt2", "gptj", "mistral", "qwen2", "qwen3"}


def split_head(model):
    """(body, output layer) of a causal LM whose logits are ``output_layer(body(ids).last_hidden_state)``, else
    None."""
    if getattr(model.config, "model_type", None) not in SPLIT_HEAD_TYPES:
        return None
    body, head = model.base_model, model.get_output_embeddings()
    if body is model or not isinstance(head, torch.nn.Linear):
        return None
    return body, head


def pack_tree(inputs: Sequence[Sequence[int]], row_tokens: int):
    """Merge token sequences into prefix tries of at most ``row_tokens`` nodes (a longer sequence gets a row of
    its own). Returns ``rows``, each ``(tokens, depths, ancestor matrix)`` in depth-first order, and for every
    input ``(row, node index of each of its positions)``."""
    order = sorted(range(len(inputs)), key=lambda i: inputs[i])
    rows, where = [], [None] * len(inputs)
    toks: list[int] = []
    parents: list[int] = []
    path: list[int] = []
    prev: Sequence[int] = ()

    def flush():
        n = len(toks)
        anc = np.zeros((n, n), dtype=bool)
        for j, par in enumerate(parents):
            if par >= 0:
                anc[j] = anc[par]
            anc[j, j] = True
        depth = [0] * n
        for j, par in enumerate(parents):
            depth[j] = depth[par] + 1 if par >= 0 else 0
        rows.append((list(toks), depth, anc))
        toks.clear()
        parents.clear()

    for i in order:
        x = inputs[i]
        lcp, m = 0, min(len(x), len(prev))
        while lcp < m and x[lcp] == prev[lcp]:
            lcp += 1
        if toks and len(toks) + len(x) - lcp > row_tokens:
            flush()
            lcp = 0
        del path[lcp:]
        for d in range(lcp, len(x)):
            parents.append(path[d - 1] if d else -1)
            path.append(len(toks))
            toks.append(x[d])
        where[i] = (len(rows), list(path))
        prev = x
    if toks:
        flush()
    return rows, where


def consecutive_groups(widths: Sequence[int], max_tokens: int, max_count: int | None = None) -> list[list[int]]:
    """Consecutive indices in groups whose padded size (members x widest member) stays within ``max_tokens`` and
    whose size within ``max_count`` (a single member may exceed ``max_tokens`` on its own)."""
    out, cur, width = [], [], 0
    for i, w in enumerate(widths):
        w = max(width, w)
        if cur and ((max_count is not None and len(cur) >= max_count) or (len(cur) + 1) * w > max_tokens):
            out.append(cur)
            cur, w = [], widths[i]
        cur.append(i)
        width = w
    if cur:
        out.append(cur)
    return out


def _top_two_gap(scores: list[float]) -> float:
    best = sorted(scores)
    return best[-1] - best[-2]


def bf16_bound(scores: list[float]) -> float:
    """How far apart the best two of an item's bf16 scores may be and still rank the other way in fp32. (A third,
    lower option needs no check: its bound exceeds the runner-up's by u x the extra gap, less than the gap.)"""
    a, b = sorted(scores)[-2:]
    return TIE_MARGIN + BF16_ERROR_FACTOR * BF16_UNIT_ROUNDOFF * (abs(a) + abs(b))


class Scorer:
    """Scores (context, continuation) token pairs with one loaded model."""

    def __init__(self, model, tokenizer, batch_size: int = 256, bf16: bool = False, max_batch_tokens: int = 8192,
                 split: bool | None = None, tree: bool = True, row_tokens: int = ROW_TOKENS,
                 temperature: float = 1.0, exact_bf16: bool = False):
        self.model = model.eval()
        # rank in bf16, then in fp32 again every item whose bf16 margin is within ``bf16_bound`` (decisions are
        # fp32's); the scores that need values, not a ranking (wug, reading, perplexity), stay fp32
        self.exact_bf16 = exact_bf16 and not bf16
        self.rescored_bf16 = 0  # items ranked again in fp32 by the last ``ranked_logprobs``
        self.bf16_scores = None  # ... and the bf16 scores it ranked every item by first (for the benchmark)
        # logits are divided by this before the log-softmax (the BabyLM 2025 pipeline's temperature scan); lm-eval
        # has none, and dividing by 1.0 is exact, so the default changes no number
        self.temperature = temperature
        # the padded layout's split output layer (module docstring) by default only in bf16 mode: in fp32 the
        # padded layout keeps lm-eval's own arithmetic
        self.split = split_head(model) if (bf16 if split is None else split) else None
        self.tokenizer = tokenizer
        self.batch_size = batch_size  # at most this many sequences per forward pass ...
        self.max_batch_tokens = max_batch_tokens  # ... and at most this many (padded) tokens
        self.bf16 = bf16
        self.max_len = max_length(model, tokenizer)
        self.device = next(model.parameters()).device
        self.row_tokens = row_tokens
        # the tree layout is not lm-eval's arithmetic anyway (near-ties are re-scored), so it always runs the
        # output layer only at the nodes it needs, in blocks (when the architecture allows, see ``split_head``)
        self.tree_split = split_head(model)
        self._tree = None if tree else False  # None: not yet checked (``tree_ok``)
        self.rescored = 0  # near-tie pairs re-scored in the padded layout by the last ``score_items``

    @torch.inference_mode()
    def logprobs(self, requests: Sequence[tuple[list[int], list[int]]], tree: bool | None = None) -> list[float]:
        """Summed log-probability of each continuation given its context (each distinct request scored once)."""
        keys = [(tuple(c), tuple(k)) for c, k in requests]
        unique = list(dict.fromkeys(keys))
        use_tree = self.tree_ok() if tree is None else tree
        sums = self._logprobs_tree(unique) if use_tree else self._logprobs_padded(unique)
        scores = dict(zip(unique, sums))
        return [scores[key] for key in keys]

    @torch.inference_mode()
    def next_token_probs(self, requests: Sequence[tuple[Sequence[int], int]]) -> list[tuple[float, float]]:
        """(P, log P) of token given context for (context ids, token id) requests, P as the BabyLM 2025 reading
        pipeline computes it (``get_p``): each distinct context alone in one forward pass, unpadded, with its
        attention mask, and a float32 softmax at the last position. A batch of one keeps the pipeline's GEMM
        shapes, so the probabilities are its own bit for bit, where padded batches differ from it by float32
        rounding (in fp32 and exact bf16; plain bf16 runs the model under autocast, as everywhere). log P (a
        log-softmax) stays finite where P underflows to zero."""
        by_context: dict[tuple, list[int]] = {}
        for ctx, tok in requests:
            by_context.setdefault(tuple(ctx), []).append(tok)
        probs: dict[tuple, tuple[float, float]] = {}
        for ctx, toks in by_context.items():
            ids = torch.tensor([ctx], device=self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits[0, -1]
            logits = self._tempered(out.float())
            p, logp = torch.softmax(logits, dim=-1), torch.log_softmax(logits, dim=-1)
            for tok in toks:
                probs[(ctx, tok)] = (p[tok].item(), logp[tok].item())
        return [probs[(tuple(ctx), tok)] for ctx, tok in requests]

    def _inputs(self, ctx: tuple, cont: tuple) -> list[int]:
        return model_input(ctx, cont, self.max_len)

    def _logprobs_padded(self, unique: list[tuple]) -> list[float]:
        """One right-padded row per sequence, longest first: lm-eval's layout."""
        order = sorted(range(len(unique)), key=lambda i: -(len(unique[i][0]) + len(unique[i][1])))
        scores: dict[tuple, float] = {}
        split = self.split
        for batch in self._batches([unique[i] for i in order]):
            inps = [self._inputs(c, k) for c, k in batch]
            width = max(len(x) for x in inps)
            ids = torch.zeros(len(inps), width, dtype=torch.long)
            for j, x in enumerate(inps):
                ids[j, : len(x)] = torch.tensor(x)
            ids = ids.to(self.device)
            sums = (self._sums_split(split, ids, inps, batch) if split is not None
                    else self._sums_full(ids, inps, batch))
            scores.update(zip(batch, sums))
        return [scores[u] for u in unique]

    @torch.inference_mode()
    def tree_ok(self) -> bool:
        """Whether this model scores prefix trees correctly: it must take a 4D additive attention mask and
        ``position_ids`` (checked once, on four short sequences against the padded layout, without bf16)."""
        if self._tree is None:
            vocab = int(self.model.config.vocab_size)
            p = prefix_token_id(self.tokenizer) or 0
            a, b, c, d = (7 % vocab, 11 % vocab, 13 % vocab, 17 % vocab)
            reqs = [((p,), (a, b, c, d)), ((p,), (a, b, d)), ((p,), (c, a)), ((p, a), (b, c))]
            bf16, self.bf16 = self.bf16, False
            try:
                tree = self._logprobs_tree(reqs)
                flat = self._logprobs_padded(reqs)
                self._tree = all(abs(x - y) <= 1e-3 for x, y in zip(tree, flat))
            except Exception:  # noqa: BLE001 - any model that cannot take the mask simply uses the padded layout
                self._tree = False
            finally:
                self.bf16 = bf16
        return self._tree

    def _logprobs_tree(self, unique: list[tuple]) -> list[float]:
        """Prefix-tree layout: the distinct inputs, sorted, are merged into tries of at most ``row_tokens`` nodes;
        each row holds one trie in depth-first order, every node attends to its ancestors only (a 4D mask) at
        position id = its depth. A prefix shared by several sentences (the part of a minimal pair before the
        words that differ; template openings) is run once per row, and the distribution at a node serves every
        sentence through it. Per-token log-probabilities are the same quantities as in the padded layout, up
        to float rounding (see ``score_items`` for how that is kept from deciding a pair)."""
        inps = [self._inputs(c, k) for c, k in unique]
        rows, where = pack_tree(inps, self.row_tokens)
        sums = torch.zeros(len(unique), dtype=torch.float64)
        row_of: list[list[int]] = [[] for _ in rows]
        for i, (r, _) in enumerate(where):
            if unique[i][1]:  # an empty continuation sums to 0 (and may have no node)
                row_of[r].append(i)
        dev = self.device
        dt = torch.bfloat16 if self.bf16 else next(self.model.parameters()).dtype  # the additive mask's dtype
        for batch in self._row_batches(rows):
            width = max(len(rows[r][0]) for r in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            pos = torch.zeros(len(batch), width, dtype=torch.long)
            allowed = torch.zeros(len(batch), 1, width, width, dtype=torch.bool)
            allowed[:, 0] |= torch.eye(width, dtype=torch.bool)  # padding attends to itself (no empty softmax)
            seq, b_idx, c_idx, tok = [], [], [], []
            for j, r in enumerate(batch):
                toks, depth, anc = rows[r]
                n = len(toks)
                ids[j, :n] = torch.tensor(toks)
                pos[j, :n] = torch.tensor(depth)
                allowed[j, 0, :n, :n] = torch.from_numpy(anc)
                for i in row_of[r]:
                    path, k = where[i][1], unique[i][1]
                    seq += [i] * len(k)
                    b_idx += [j] * len(k)
                    c_idx += path[len(path) - len(k):]
                    tok += k
            mask = torch.zeros(allowed.shape, dtype=dt).masked_fill_(~allowed, torch.finfo(dt).min)
            ids, pos, mask = ids.to(dev), pos.to(dev), mask.to(dev)
            b_t, c_t, tok_t = (torch.tensor(v, device=dev) for v in (b_idx, c_idx, tok))
            if self.tree_split is not None:
                body, head = self.tree_split
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
                    hidden = body(input_ids=ids, attention_mask=mask, position_ids=pos,
                                  use_cache=False).last_hidden_state
                lp = self._node_logprobs(head, hidden.flatten(0, 1), b_t * width + c_t, tok_t)
            else:
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
                    logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
                logp = F.log_softmax(self._tempered(logits.float() if self.bf16 else logits), dim=-1)
                lp = logp[b_t, c_t, tok_t]
            sums.index_add_(0, torch.tensor(seq), lp.double().cpu())
        return sums.tolist()

    def _tempered(self, logits):
        return logits if self.temperature == 1.0 else logits / self.temperature

    def _row_batches(self, rows: list) -> list[list[int]]:
        """Consecutive rows, at most ``max_batch_tokens`` (padded) tokens per forward pass."""
        return consecutive_groups([len(row[0]) for row in rows], self.max_batch_tokens)

    def _node_logprobs(self, head, hidden, node, toks_t):
        """log P(target) for (node, target) entries, running the output layer once per distinct node (a node
        where a pair's sentences part serves both)."""
        uniq, inv = torch.unique(node, return_inverse=True)
        return self._head_logprobs(head, hidden[uniq], toks_t, inv)

    def _head_logprobs(self, head, h, toks_t, inv=None):
        """log P(target) at rows ``h`` of last hidden states: the output layer in ``HEAD_BLOCK``-row blocks, a
        log-softmax over ``SOFTMAX_BLOCK``-row slices of each block (cache-resident; faster here than
        ``logsumexp``), then a gather. Entry ``e`` reads token ``toks_t[e]`` at row ``inv[e]`` (default: row ``e``;
        several entries may share a row)."""
        if inv is None:
            inv = torch.arange(len(h), device=h.device)
        order = torch.argsort(inv, stable=True)
        inv_s, toks_s = inv[order], toks_t[order]
        lp = torch.empty(len(inv), dtype=torch.float32, device=h.device)
        n = len(h)
        starts = [(s, u) for s in range(0, n, HEAD_BLOCK) for u in range(0, min(HEAD_BLOCK, n - s), SOFTMAX_BLOCK)]
        edges = [s + u for s, u in starts] + [n]
        bounds = torch.searchsorted(inv_s, torch.tensor(edges, device=h.device)).tolist()
        i = 0
        for s in range(0, n, HEAD_BLOCK):
            with torch.autocast(h.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                lg = head(h[s : s + HEAD_BLOCK])
            lg = self._tempered(lg.float())
            for u in range(0, lg.size(0), SOFTMAX_BLOCK):
                a, b = bounds[i], bounds[i + 1]
                i += 1
                if a < b:
                    ls = F.log_softmax(lg[u : u + SOFTMAX_BLOCK], dim=-1)
                    lp[order[a:b]] = ls[inv_s[a:b] - (s + u), toks_s[a:b]]
        return lp

    def _sums_full(self, ids, inps, batch) -> list[float]:
        """lm-eval's own arithmetic: log_softmax over the whole logits tensor, gather, sum per sequence."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(input_ids=ids, use_cache=False).logits
        logp = F.log_softmax(self._tempered(logits.float() if self.bf16 else logits), dim=-1)
        out = []
        for j, (_, k) in enumerate(batch):
            n, cont = len(inps[j]), torch.tensor(k, device=self.device)
            out.append(float(torch.gather(logp[j, n - len(k) : n], 1, cont.unsqueeze(-1)).sum()))
        return out

    def _sums_split(self, split, ids, inps, batch) -> list[float]:
        """The same quantity without the (batch, width, vocab) tensors: the output layer runs only on the
        continuation positions (``_head_logprobs``)."""
        body, head = split
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            hidden = body(input_ids=ids, use_cache=False).last_hidden_state
        rows, cols, toks = [], [], []  # one entry per continuation token: sequence, position, target
        for j, (_, k) in enumerate(batch):
            n = len(inps[j])
            rows += [j] * len(k)
            cols += range(n - len(k), n)
            toks += k
        dev = self.device
        rows_t = torch.tensor(rows, device=dev)
        h = hidden[rows_t, torch.tensor(cols, device=dev)]
        lp = self._head_logprobs(head, h, torch.tensor(toks, device=dev))
        sums = torch.zeros(len(batch), dtype=torch.float32, device=dev)
        sums.index_add_(0, rows_t, lp)
        return sums.tolist()

    def _batches(self, seqs: list[tuple]) -> list[list[tuple]]:
        """Consecutive groups of the length-sorted (longest first) sequences within both batch limits."""
        widths = [min(len(c) + len(k), self.max_len + 1) - 1 for c, k in seqs]
        return [[seqs[i] for i in g] for g in consecutive_groups(widths, self.max_batch_tokens, self.batch_size)]

    def ranked_logprobs(self, reqs: Sequence[tuple], item_of: Sequence[int]) -> list[float]:
        """Summed log-probabilities of requests whose ranking within each item (``item_of[k]``: the item of
        request k) decides it, with the rank exactly as fp32 and lm-eval's layout give it: in fp32, near-ties
        re-scored padded; in exact bf16, scored in bf16 and every item within ``bf16_bound`` scored again so.
        Sets ``rescored`` (near-ties) and ``rescored_bf16`` (items ranked again in fp32)."""
        self.rescored = self.rescored_bf16 = 0
        tree = self.tree_ok()
        if not self.exact_bf16:
            lp = self.logprobs(reqs, tree=tree)
            if tree and not self.bf16:
                self.rescored = self.rescore_near_ties(reqs, lp, item_of)
            return lp
        self.bf16 = True
        try:
            lp = self.logprobs(reqs, tree=tree)
        finally:
            self.bf16 = False
        by_item: dict[int, list[int]] = {}
        for k, i in enumerate(item_of):
            by_item.setdefault(i, []).append(k)
        self.bf16_scores = list(lp)
        close = [ks for ks in by_item.values()
                 if len(ks) > 1 and _top_two_gap([lp[k] for k in ks]) <= bf16_bound([lp[k] for k in ks])]
        picked = [k for ks in close for k in ks]
        again = self.logprobs([reqs[k] for k in picked], tree=tree)
        if tree:
            self.rescored = self.rescore_near_ties([reqs[k] for k in picked], again,
                                                   [item_of[k] for k in picked])
        for k, v in zip(picked, again):
            lp[k] = v
        self.rescored_bf16 = len(close)
        return lp

    def rescore_near_ties(self, reqs: Sequence[tuple], lp: list[float], item_of: Sequence[int]) -> int:
        """Score again in the padded layout, in place in ``lp``, every request of each item (``item_of[k]``: the
        item of request k) whose best two options are within ``TIE_MARGIN`` nats; returns how many items."""
        by_item: dict[int, list[int]] = {}
        for k, i in enumerate(item_of):
            by_item.setdefault(i, []).append(k)
        close = [ks for ks in by_item.values() if len(ks) > 1 and _top_two_gap([lp[k] for k in ks]) <= TIE_MARGIN]
        picked = [k for ks in close for k in ks]
        for k, v in zip(picked, self.logprobs([reqs[k] for k in picked], tree=False)):
            lp[k] = v
        return len(close)

    def score_items(self, items: Sequence[Item]) -> tuple[list[bool], list[tuple[float, float]]]:
        """(correct per item, (logP choice 0, logP choice 1) per item). Ties count as right.

        With the prefix-tree layout, a pair whose two scores are within ``TIE_MARGIN`` nats is scored again in
        lm-eval's padded layout, so that float rounding (about 1e-5 nats here) cannot decide it differently
        from lm-eval; exact bf16 ranks in fp32 again every pair its bf16 scores leave in doubt
        (``ranked_logprobs``); plain bf16 (not meant to be identical) re-scores none. The scores returned are
        those that decided each pair (bf16 ones for pairs exact bf16 did not score again)."""
        reqs = encode_many(self.tokenizer, [(it.context, ch) for it in items for ch in it.choices])
        lp = self.ranked_logprobs(reqs, [i // 2 for i in range(len(reqs))])
        pairs = [(lp[2 * i], lp[2 * i + 1]) for i in range(len(items))]
        return [g >= b for g, b in pairs], pairs
