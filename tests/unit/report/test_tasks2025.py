"""The report's BabyLM 2025 section: a row per model with CIs and the pooled student - baseline verdict of each task."""

import numpy as np
import pytest

from babyllama.eval.choice_suites import entity_summary, wug_summary
from babyllama.eval.reading import reading_summary
from babyllama.eval.tasks2025 import ChoiceItem
from babyllama.report.tasks2025 import section_2025
from helpers import synthetic_reading_frame as synthetic_frame


def _models(tmp_path):
    rng = np.random.default_rng(0)
    et = [ChoiceItem(f"regular_{k % 2}_ops", k, ("a", "b"), ("a", "b"), "regular") for k in range(60)]
    wug = [ChoiceItem("wug_adj", k, ("x", "y"), ("x", "y"), ratio=float(r)) for k, r in enumerate(rng.uniform(size=50))]
    df = synthetic_frame(30)
    (tmp_path / "eval" / "reading").mkdir(parents=True)
    df.to_csv(tmp_path / "eval" / "reading" / "reading_data.csv")
    models = []
    for seed in (1, 2):
        for role, p_right, noise in (("student", 0.8, 0.5), ("baseline", 0.5, 3.0)):
            human = np.array([it.ratio for it in wug])
            lp = np.column_stack([human * 4 + rng.normal(0, noise, 50), np.zeros(50)])
            pred = rng.normal(8, 2, len(df))
            prev = np.where(df["prev_item"].isna(), np.nan, rng.normal(8, 2, len(df)))
            ev = {"suites": {"entity_tracking_fast": entity_summary(et, rng.uniform(size=60) < p_right, 200),
                             "wug_adj": wug_summary(wug, lp, 200),
                             "reading": reading_summary(df, pred, prev, 99)}}
            models.append({"name": f"{role}:s{seed}", "role": role, "seed": seed, "eval": ev})
    return models


def test_section_has_a_row_per_model_and_the_pooled_verdicts(tmp_path):
    models = _models(tmp_path)
    md, rows = section_2025(models, n_boot=200, eval_root=str(tmp_path / "eval"))
    text = "\n".join(md)
    assert "## BabyLM 2025 tasks" in text and text.count("| student s") == 2 and text.count("| baseline s") == 2
    assert {r["suite"] for r in rows} == {"entity_tracking_fast", "wug_adj", "reading"}
    assert all(r["comparison"] == "student - baseline" and r["seeds"] == [1, 2] for r in rows)
    et = next(r for r in rows if r["suite"] == "entity_tracking_fast")["result"]
    per_seed = [models[2 * i]["eval"]["suites"]["entity_tracking_fast"]["macro"]["acc"]
                - models[2 * i + 1]["eval"]["suites"]["entity_tracking_fast"]["macro"]["acc"] for i in range(2)]
    assert et["diff"] == pytest.approx(np.mean(per_seed))
    wug = next(r for r in rows if r["suite"] == "wug_adj")["result"]
    assert wug["diff"] > 0 and wug["ci"][0] > 0  # the student tracks the human ratios, the baseline barely
    reading = next(r for r in rows if r["suite"] == "reading")["result"]
    assert set(reading) == {"eye_tracking", "self_paced_reading"}
    assert "- **reading, student - baseline** (seeds 1,2): eye tracking" in text


def test_no_section_without_the_tasks_and_no_reading_verdict_without_its_data(tmp_path):
    assert section_2025([{"name": "student:s1", "role": "student", "seed": 1, "eval": {"suites": {}}}]) == ([], [])
    models = _models(tmp_path)
    _, rows = section_2025(models, n_boot=200, eval_root=str(tmp_path / "elsewhere"))
    assert {r["suite"] for r in rows} == {"entity_tracking_fast", "wug_adj"}
