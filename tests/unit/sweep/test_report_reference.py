"""The sweep report's comparison of every trial with a reference trial (compare_to), seed by seed."""

from types import SimpleNamespace

import optuna

from babyllama.eval.stats import paired_comparison
from babyllama.sweep.config import SweepConfig
from babyllama.sweep.report import reference_comparisons, reference_section


def model(name, role, seed, decisions, chunks):
    macro = sum(s.count("1") / len(s) for s in decisions.values()) / len(decisions)
    return {"name": name, "role": role, "seed": seed, "dir": None, "metrics": {},
            "eval": {"suites": {"blimp_filtered": {"decisions": decisions, "macro": {"acc": macro}}},
                     "perplexity": {"dev": {"domains": {"d": {"chunk_ce": chunks}}}}}}


def sweep_cfg(**kw):
    return SweepConfig.model_validate({
        "name": "s", "recipe": "r.yaml", "sweep_dir": "x",
        "space": {"divergence": {"distribution": "variants", "variants": {"forward_kl": {}, "tvd": {}}}},
        "objective": {"stage": "verdicts", "comparison": "student - baseline", "metric": "blimp.diff",
                      "direction": "maximize"}, "sampler": {"type": "grid"}, **kw})


def trial(number, label):
    return SimpleNamespace(number=number, state=optuna.trial.TrialState.COMPLETE,
                           user_attrs={"run_dir": f"trials/trial-{number}", "values": {"divergence": label}})


def test_each_trial_is_paired_seed_by_seed_with_the_reference_and_with_its_baseline(tmp_path):
    base = [model(f"baseline:s{s}", "baseline", s, {"p": "10000000"}, [3.5] * 8) for s in (1, 2)]
    runs = {
        "trial-0": base + [model("student:s1", "student", 1, {"p": "11000000"}, [3.2] * 8),
                           model("student:s2", "student", 2, {"p": "11000000"}, [3.3] * 8)],
        "trial-1": base + [model("student:s1", "student", 1, {"p": "11110000"}, [3.0] * 7 + [3.1]),
                           model("student:s2", "student", 2, {"p": "11100000"}, [3.1] * 8)],
    }
    cfg = sweep_cfg(compare_to={"divergence": "forward_kl"})
    rows = reference_comparisons(tmp_path, cfg, [trial(0, "forward_kl"), trial(1, "tvd")], n_boot=199,
                                 models_in=lambda d: runs[d.name])
    ref, tvd = rows
    assert "vs_reference" not in ref and ref["vs_baseline"]["blimp"]["diff"] == 0.125
    v = tvd["vs_reference"]
    assert v["seeds"] == [1, 2]
    assert v["blimp"] == paired_comparison({"s1:p": [1, 1, 1, 1, 0, 0, 0, 0], "s2:p": [1, 1, 1, 0, 0, 0, 0, 0]},
                                           {"s1:p": [1, 1, 0, 0, 0, 0, 0, 0], "s2:p": [1, 1, 0, 0, 0, 0, 0, 0]}, 199)
    assert [r["seeds"] for r in tvd["vs_reference_per_seed"]] == [[1], [2]]
    assert v["dev_ce"]["diff"] < 0
    lines = reference_section(rows)
    assert lines[1] == "## Every trial against divergence=forward_kl and against the baseline"
    (row,) = [x for x in lines if x.startswith("| divergence=tvd |")]
    assert "better in all 2" in row  # dev CE lower in each seed's own CI
    assert lines[-1].startswith("Better than divergence=forward_kl in every seed's own CI: divergence=tvd")


def test_compare_to_must_name_a_parameter_and_one_of_its_values():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a parameter"):
        sweep_cfg(compare_to={"temperature": 2})
    with pytest.raises(ValidationError, match="not one of its values"):
        sweep_cfg(compare_to={"divergence": "kl"})
    assert reference_comparisons(None, sweep_cfg(), [trial(0, "forward_kl")]) == []
