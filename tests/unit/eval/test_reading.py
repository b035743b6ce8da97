"""The reading task: surprisal by the pipeline's get_p2 rule (written out here as its code does it, one sequence
per forward pass), its regressions equal to statsmodels' formulas, the bootstrap's weighted R^2 equal to an OLS
fit on repeated rows, and bad CSVs refused in one line."""

import math

import numpy as np
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
import torch

from babyllama.config import ModelConfig
from babyllama.errors import UserError
from babyllama.eval import reading
from babyllama.eval.reading import (COLUMNS, MEASURES, read_reading, reading_summary, regressions, surprisals,
                                    weighted_r2)
from babyllama.eval.scoring import Scorer
from babyllama.models import build_model
from helpers import synthetic_reading_frame as synthetic_frame


def get_p(sentence, word, model, tokenizer):
    inputs = tokenizer(sentence, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1, :]
    return torch.softmax(logits[0], -1)[tokenizer(word, add_special_tokens=False)["input_ids"][0]].item()


def get_p2(sentence, word, model, tokenizer):
    """evaluation_pipeline/reading/evaluation_functions.py's get_p2 (causal), as published."""
    target = tokenizer(word, add_special_tokens=False)["input_ids"]
    inputs = tokenizer(sentence, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1, :]
    out = [torch.softmax(logits[0], -1)[target[0]].item()]
    sentence = sentence + tokenizer.decode(target[0])
    for tok in target[1:]:
        t = tokenizer.decode(tok)
        out.append(get_p(sentence, t, model, tokenizer))
        sentence = sentence + t
    return np.prod(out)


def test_surprisal_is_the_pipelines_get_p2(tiny_tokenizer):
    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval()
    df = synthetic_frame(6)
    multi = [w for w in df["word"] if len(tiny_tokenizer(w, add_special_tokens=False)["input_ids"]) > 1]
    assert multi, "the test needs a word of several tokens"
    pred, prev = surprisals(Scorer(model, tiny_tokenizer), df)
    ref = [-math.log(get_p2(r.item, r.word, model, tiny_tokenizer)) for r in df.itertuples()]
    ref_prev = [-math.log(get_p2(r.prev_item, r.prev_word, model, tiny_tokenizer)) if isinstance(r.prev_item, str)
                else math.nan for r in df.itertuples()]
    assert pred.tolist() == ref  # bit for bit: one context per forward pass, the pipeline's float arithmetic
    assert np.isnan(prev).tolist() == np.isnan(ref_prev).tolist()
    assert prev[~np.isnan(prev)].tolist() == np.array(ref_prev)[~np.isnan(prev)].tolist()


def test_reading_runs_at_the_scorers_precision(tiny_tokenizer):
    """fp32 and exact bf16 (values stay fp32): the same probabilities; plain bf16: the model under autocast."""
    model = build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).eval()
    reqs = [(tuple(tiny_tokenizer("The cat sat on the")["input_ids"]), t) for t in (5, 9, 17)]
    fp32 = Scorer(model, tiny_tokenizer).next_token_probs(reqs)
    assert Scorer(model, tiny_tokenizer, exact_bf16=True).next_token_probs(reqs) == fp32
    bf16 = Scorer(model, tiny_tokenizer, bf16=True).next_token_probs(reqs)
    assert bf16 != fp32 and [p for p, _ in bf16] == pytest.approx([p for p, _ in fp32], rel=0.05)


def test_a_probability_that_underflows_gives_the_log_softmax_surprisal():
    assert reading._surprisal([(0.5, math.log(0.5)), (0.25, math.log(0.25))]) == -math.log(0.125)
    assert reading._surprisal([(0.0, -120.0), (0.5, -0.7)]) == pytest.approx(120.7)


def test_regressions_are_the_pipelines_formulas_and_figures():
    df = synthetic_frame()
    rng = np.random.default_rng(1)
    pred = rng.normal(8, 2, len(df))
    df["self_paced_reading_time"] += 10 * pred  # surprisal explains something here
    prev = np.where(df["prev_item"].isna(), np.nan, rng.normal(8, 2, len(df)))
    res = regressions(df, pred, prev)
    d = df.assign(pred=pred, prev_pred=prev)
    base = smf.ols("RTgopast ~ Subtlex_log10 + length + context_length + Subtlex_log10:length + "
                   "Subtlex_log10:context_length + length:context_length", d).fit()
    full = smf.ols("RTgopast ~ Subtlex_log10 + length + context_length + Subtlex_log10:length + "
                   "Subtlex_log10:context_length + length:context_length + pred", d).fit()
    r = res["measures"]["RTgopast"]
    assert r["delta_r2"] == pytest.approx(full.rsquared - base.rsquared, rel=1e-12)
    assert r["t"] == pytest.approx(full.tvalues["pred"], rel=1e-12)
    eye = [100 * v["delta_r2"] / (1 - (v["r2"] - v["delta_r2"])) for k, v in res["measures"].items() if "RT" in k]
    assert res["eye_tracking"] == pytest.approx(np.mean(eye))
    assert len(eye) == 4  # the four eye-tracking measures; self-paced reading has no "RT" in its name
    spr = res["spillover"]["self_paced_reading_time"]
    assert res["self_paced_reading"] == pytest.approx(100 * spr["delta_r2"] / (1 - spr["r2"] + spr["delta_r2"]))
    assert spr["rows"] == int((~np.isnan(prev)).sum())  # spillover drops the first word of each sentence
    s = reading_summary(df, pred, prev, n_boot=99)
    lo, hi = s["figures"]["self_paced_reading"]["ci"]
    assert lo < s["figures"]["self_paced_reading"]["value"] < hi and lo > 0


def test_weighted_r2_is_ols_on_repeated_rows():
    rng = np.random.default_rng(2)
    x = np.column_stack([np.ones(50), rng.normal(size=(50, 3))])
    y = x @ [1, 2, 0, -1] + rng.normal(size=50)
    w = rng.integers(0, 4, 50)
    rep = np.repeat(np.arange(50), w)
    assert weighted_r2(y, x, w.astype(float)) == pytest.approx(sm.OLS(y[rep], x[rep]).fit().rsquared, rel=1e-10)
    assert weighted_r2(y, x) == pytest.approx(sm.OLS(y, x).fit().rsquared, rel=1e-10)


def test_bad_reading_files_are_one_line(tmp_path):
    df = synthetic_frame(3)
    f = tmp_path / "reading_data.csv"
    df.to_csv(f)
    assert len(read_reading(tmp_path)) == len(df)
    df.drop(columns=["N400"]).to_csv(f)
    with pytest.raises(UserError, match="no column N400"):
        read_reading(f)
    df.assign(length="long").to_csv(f)
    with pytest.raises(UserError, match="column length is not numeric"):
        read_reading(f)
    with pytest.raises(UserError, match="not found"):
        read_reading(tmp_path / "nothing.csv")
    assert set(COLUMNS) <= set(df.columns) and reading.READING_RESAMPLES >= 99
