"""The BabyLM 2025 reading task (de Varda et al. 2023) as the pipeline's ``evaluation_pipeline/reading`` runs it.

**Surprisal** (``get_p2``, causal backend): the context ``item`` is tokenized with the tokenizer's special tokens,
the word *without* them and without a leading space (the pipeline's call: ``tokenizer(word,
add_special_tokens=False)``); P(first token) is read at the context's last position; a word of several tokens
continues with ``context + decode(token)``, re-tokenized, scoring the first token of each next token's decoded
text. Surprisal = -log of the product. The previous word is scored the same way (``prev_item``, ``prev_word``).
Each distinct context runs once, alone in its forward pass as in the pipeline (``Scorer.next_token_probs``): padded
batches would differ from its surprisals by float32 rounding, which a change in R^2 of 1e-4 amplifies past 1e-6
relative.

**Regressions** (statsmodels OLS, the pipeline's formulas): each measure on the baseline predictors
(``Subtlex_log10``, ``length``, ``context_length`` and their pairwise interactions), with and without the
surprisal ``pred``; and, with one-word spillover, on those plus ``prev_length`` and ``prev_pred`` and all
pairwise interactions. Per measure: the surprisal's coefficient, t, p, R^2, the change in R^2 and AIC.

**Figures of merit** (the pipeline's report): *eye tracking score* = the mean over the four eye-tracking measures
(names containing ``RT``) of ``100 (R^2 - R^2_base) / (1 - R^2_base)`` without spillover; *self-paced reading
score* = the same for ``self_paced_reading_time`` with spillover. Their 95% CIs here resample the 205 sentences
(a cluster bootstrap, the regressions refitted on each resample; the pipeline reports none).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import UserError
from .stats import N_BOOT, bootstrap_p

MEASURES = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound", "self_paced_reading_time",
            "ELAN", "LAN", "N400", "P600", "EPNP", "PNP")
BASELINE = ("Subtlex_log10", "length", "context_length")
SPILLOVER = ("prev_length", "prev_pred")
# at most this many bootstrap resamples behind the reading figures' CIs (each refits 12 regressions, or 24 paired)
READING_RESAMPLES = 1000
COLUMNS = ("item", "word", "prev_item", "prev_word", "sent_id", *BASELINE, "prev_length", *MEASURES)


def _formula(dv: str, predictors: tuple[str, ...], with_pred: bool) -> str:
    inter = [f"{a}:{b}" for i, a in enumerate(predictors) for b in predictors[i + 1:]]
    return f"{dv} ~ " + " + ".join([*predictors, *inter, *(["pred"] if with_pred else [])])


def read_reading(path: str | Path):
    """The reading CSV as the pipeline reads it (``item`` as text, a missing item read as the text "None")."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "reading_data.csv"
    if not path.is_file():
        raise UserError(f"{path} not found; point --eval-root at the folder holding reading/reading_data.csv "
                        "(BabyLM 2025 evaluation data)")
    try:
        df = pd.read_csv(path, dtype={"item": str})
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise UserError(f"{path}: not a readable CSV ({str(e).splitlines()[0]}); use the BabyLM 2025 "
                        "reading_data.csv") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: no column {', '.join(missing)}; the reading task needs the columns of the BabyLM "
                        "2025 reading_data.csv")
    if df.empty:
        raise UserError(f"{path}: no rows")
    df["item"] = df["item"].fillna("None")
    bad = [c for c in (*BASELINE, "prev_length", *MEASURES) if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise UserError(f"{path}: column {bad[0]} is not numeric; use the BabyLM 2025 reading_data.csv")
    if not all(isinstance(w, str) and w for w in df["word"]):
        raise UserError(f"{path}: every row needs a non-empty word")
    return df


class _Encoder:
    """``tokenizer(text)["input_ids"]`` (with special tokens) and without them, memoised, through the Rust
    tokenizer's batch call where there is one (the same ids as the pipeline's one call per string)."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.backend = getattr(tokenizer, "backend_tokenizer", None)
        self.memo: dict[tuple[str, bool], tuple[int, ...]] = {}

    def prime(self, texts, special: bool):
        texts = [t for t in dict.fromkeys(texts) if (t, special) not in self.memo]
        if texts and self.backend is not None:
            for t, e in zip(texts, self.backend.encode_batch(texts, add_special_tokens=special)):
                self.memo[(t, special)] = tuple(e.ids)

    def __call__(self, text: str, special: bool = True) -> tuple[int, ...]:
        key = (text, special)
        if key not in self.memo:
            self.memo[key] = tuple(self.tok(text, add_special_tokens=special)["input_ids"])
        return self.memo[key]


def _word_requests(enc: _Encoder, context: str, word: str) -> list[tuple[tuple[int, ...], int]]:
    """The (context ids, token id) scorings of one word by ``get_p2``'s rule."""
    target = enc(word, special=False)
    if not target:
        raise UserError(f"the tokenizer gives no token for the word {word!r}; it cannot align the reading "
                        "task's words")
    reqs = [(enc(context), target[0])]
    sentence = context + enc.tok.decode(target[0])
    for tok in target[1:]:
        piece = enc.tok.decode(tok)
        ids = enc(piece, special=False)
        if not ids:
            raise UserError(f"the tokenizer cannot re-encode the piece {piece!r} of {word!r}; it cannot align the "
                            "reading task's words")
        reqs.append((enc(sentence), ids[0]))
        sentence = sentence + piece
    return reqs


def _surprisal(probs: list[tuple[float, float]]) -> float:
    """The pipeline's arithmetic: the tokens' probabilities multiplied in float64 (``np.prod``), then -log; where
    that product underflows to zero (the pipeline stops there with a math domain error), the summed log-softmax."""
    product = float(np.prod([p for p, _ in probs]))
    return -math.log(product) if product > 0 else -sum(lp for _, lp in probs)


def surprisals(scorer, df) -> tuple[np.ndarray, np.ndarray]:
    """(surprisal of each word, of its previous word or NaN) in nats."""
    words = [(str(r.item), str(r.word)) for r in df.itertuples()]
    prev = [(r.prev_item, str(r.prev_word)) if isinstance(r.prev_item, str) else None for r in df.itertuples()]
    todo = list(dict.fromkeys(words + [p for p in prev if p is not None]))
    enc = _Encoder(scorer.tokenizer)
    enc.prime([c for c, _ in todo], True)
    enc.prime([w for _, w in todo], False)
    plans = {w: _word_requests(enc, *w) for w in todo}
    reqs = list(dict.fromkeys(r for rs in plans.values() for r in rs))
    if any(not ctx for ctx, _ in reqs):
        raise UserError("a reading context encodes to no token; the tokenizer cannot align the reading task")
    p_of = dict(zip(reqs, scorer.next_token_probs(reqs)))
    surprisal = {w: _surprisal([p_of[r] for r in rs]) for w, rs in plans.items()}
    return (np.array([surprisal[w] for w in words]),
            np.array([surprisal[p] if p is not None else math.nan for p in prev]))


def _fit(formula: str, data):
    import statsmodels.formula.api as smf

    return smf.ols(formula=formula, data=data).fit()


def regressions(df, pred: np.ndarray, prev_pred: np.ndarray) -> dict:
    """Per measure, without and with spillover, the pipeline's two fits; and the two figures of merit."""
    df = df.assign(pred=pred, prev_pred=prev_pred)
    out: dict = {"measures": {}, "spillover": {}}
    for key, predictors in (("measures", BASELINE), ("spillover", BASELINE + SPILLOVER)):
        for dv in MEASURES:
            base = _fit(_formula(dv, predictors, False), df[[dv, *predictors]].dropna())
            model = _fit(_formula(dv, predictors, True), df[["pred", dv, *predictors]].dropna())
            r2b, r2 = float(base.rsquared), float(model.rsquared)
            out[key][dv] = {"coefficient": float(model.params["pred"]), "t": float(model.tvalues["pred"]),
                            "p": float(model.pvalues["pred"]), "r2": r2, "delta_r2": r2 - r2b,
                            "aic": float(model.aic), "delta_aic": float(model.aic) - float(base.aic),
                            "gain": 100 * (r2 - r2b) / (1 - r2b), "rows": int(model.nobs)}
    eye = [v["gain"] for dv, v in out["measures"].items() if "RT" in dv]
    out["eye_tracking"] = sum(eye) / len(eye)
    out["self_paced_reading"] = out["spillover"]["self_paced_reading_time"]["gain"]
    return out


class _Design:
    """The design matrices of the regressions behind the two figures, built once (patsy, the formulas above), so
    that a bootstrap resample refits them with weights (:func:`weighted_r2`)."""

    def __init__(self, df, pred, prev_pred):
        from patsy import dmatrices

        df = df.assign(pred=pred, prev_pred=prev_pred)
        self.fits = []  # (name, y, X base, X model, rows' sentence ids)
        for dv in MEASURES:
            if "RT" in dv:
                self.fits.append(("eye_tracking", *self._xy(dmatrices, df, dv, BASELINE)))
        self.fits.append(("self_paced_reading",
                          *self._xy(dmatrices, df, "self_paced_reading_time", BASELINE + SPILLOVER)))

    @staticmethod
    def _xy(dmatrices, df, dv, predictors):
        rows = df[["pred", dv, *predictors, "sent_id"]].dropna()
        y, xm = dmatrices(_formula(dv, predictors, True), rows, return_type="dataframe")
        xb = xm.drop(columns=["pred"])
        return y.to_numpy()[:, 0], xb.to_numpy(), xm.to_numpy(), rows["sent_id"].to_numpy()

    def figures(self, counts: np.ndarray, sentences: np.ndarray) -> dict[str, float]:
        """The two figures on a resample of the sentences: ``counts[k]`` copies of sentence ``sentences[k]``
        (:func:`weighted_r2`); the figures on all rows are :func:`regressions`'."""
        gains: dict[str, list[float]] = {"eye_tracking": [], "self_paced_reading": []}
        for name, y, xb, xm, sid in self.fits:
            w = counts[np.searchsorted(sentences, sid)].astype(np.float64)
            r2b, r2 = weighted_r2(y, xb, w), weighted_r2(y, xm, w)
            gains[name].append(100 * (r2 - r2b) / (1 - r2b))
        return {k: float(np.mean(v)) for k, v in gains.items()}


def weighted_r2(y: np.ndarray, x: np.ndarray, w: np.ndarray | None = None) -> float:
    """R^2 of the least-squares fit of ``y`` on ``x`` (which holds the intercept), rows weighted by ``w``: a row
    drawn c times by the bootstrap has weight c, which gives the R^2 of the repeated rows without copying them
    (statsmodels' WLS R^2; the test checks both). scipy's LAPACK least squares: a bootstrap refits thousands of
    times, which statsmodels' model objects make about ten times slower."""
    from scipy.linalg import lstsq

    if w is None:
        w = np.ones_like(y)
    keep = w > 0
    y, x, w = y[keep], x[keep], w[keep]
    sw = np.sqrt(w)
    coef = lstsq(x * sw[:, None], y * sw, lapack_driver="gelsy", check_finite=False)[0]
    resid = y - x @ coef
    centred = y - np.average(y, weights=w)
    return float(1 - (w * resid**2).sum() / (w * centred**2).sum())


def _sentence_resamples(sent_ids: np.ndarray, n_boot: int, seed: int = 0):
    """(sorted sentence ids, per replicate how many times each is drawn): the same sentences for every fit and
    model of one replicate."""
    sents = np.unique(sent_ids)
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield sents, np.bincount(rng.integers(0, sents.size, sents.size), minlength=sents.size)


def reading_summary(df, pred, prev_pred, n_boot: int = N_BOOT) -> dict:
    n_boot = min(n_boot, READING_RESAMPLES)
    res = regressions(df, pred, prev_pred)
    design = _Design(df, pred, prev_pred)
    reps = [design.figures(c, s) for s, c in _sentence_resamples(df["sent_id"].to_numpy(), n_boot)]
    figures = {}
    for k in ("eye_tracking", "self_paced_reading"):
        r = np.array([x[k] for x in reps])
        figures[k] = {"value": res[k], "ci": (float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975)))}
    return {"macro": {"acc": res["eye_tracking"], "ci": figures["eye_tracking"]["ci"], "paradigms": 1,
                      "items": len(df), "sentences": int(df["sent_id"].nunique()), "resamples": n_boot,
                      "metric": "eye tracking score"},
            "figures": figures, "measures": res["measures"], "spillover": res["spillover"],
            "surprisal": [float(x) for x in pred], "prev_surprisal": [float(x) for x in prev_pred]}


def compare_reading(df, a: dict, b: dict, n_boot: int = N_BOOT) -> dict:
    """Model a - model b on both figures, the same sentences resampled for both."""
    return reading_differences(df, [(a, b)], n_boot)


def reading_differences(df, pairs: list[tuple[dict, dict]], n_boot: int = N_BOOT) -> dict:
    """a - b on both figures over pairs of reading summaries (one pair per seed): the mean of the pairs'
    differences, the CI from the mean of their replicates (sentences resampled within each pair)."""
    sid = df["sent_id"].to_numpy()
    n_boot = min(n_boot, READING_RESAMPLES)
    reps: dict[str, list] = {"eye_tracking": [], "self_paced_reading": []}
    for n, (a, b) in enumerate(pairs):
        da = _Design(df, np.asarray(a["surprisal"]), np.asarray(a["prev_surprisal"]))
        db = _Design(df, np.asarray(b["surprisal"]), np.asarray(b["prev_surprisal"]))
        one = [(da.figures(c, s), db.figures(c, s)) for s, c in _sentence_resamples(sid, n_boot, seed=n)]
        for k in reps:
            reps[k].append([x[k] - y[k] for x, y in one])
    out = {}
    for k, r in reps.items():
        r = np.mean(r, axis=0)
        out[k] = {"diff": float(np.mean([a["figures"][k]["value"] - b["figures"][k]["value"] for a, b in pairs])),
                  "ci": (float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))),
                  "p_bootstrap": bootstrap_p(r), "resamples": n_boot}
    return out
