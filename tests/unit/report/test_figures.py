"""The report's figures: per-phenomenon accuracy pooled over seeds with CIs, dev CE differences from the baseline."""

import pytest

from babyllama.eval.stats import macro_bootstrap, paired_mean_diff
from babyllama.report.figures import domain_differences, loss_curves, phenomena_bars, phenomenon_accuracy


def model(name, role, seed, decisions, chunks, history=None):
    paradigms = {p: {"acc": d.count("1") / len(d), "n": len(d), "group": "agr"} for p, d in decisions.items()}
    return {"name": name, "role": role, "seed": seed, "dir": None,
            "metrics": history,
            "eval": {"suites": {"blimp": {"decisions": decisions, "paradigms": paradigms}},
                     "perplexity": {"dev": {"domains": {"wiki": {"ce": sum(chunks) / len(chunks),
                                                                 "chunk_ce": chunks}}}}}}


MODELS = [model("baseline:s1", "baseline", 1, {"p": "1000", "q": "10"}, [3.2, 3.4, 3.3]),
          model("baseline:s2", "baseline", 2, {"p": "0000", "q": "11"}, [3.3, 3.3, 3.1]),
          model("student:s1", "student", 1, {"p": "1110", "q": "11"}, [3.1, 3.0, 3.2]),
          model("student:s2", "student", 2, {"p": "1100", "q": "01"}, [3.0, 3.1, 3.0])]


def test_phenomenon_accuracy_pools_seeds_as_the_verdicts_do():
    got = phenomenon_accuracy(MODELS[2:], "blimp", n_boot=200)
    want = macro_bootstrap({"s1:p": [1, 1, 1, 0], "s1:q": [1, 1], "s2:p": [1, 1, 0, 0], "s2:q": [0, 1]}, 200)
    assert got == {"agr": want}


def test_domain_differences_pair_each_model_with_its_seeds_baseline(tmp_path, monkeypatch):
    import babyllama.report.figures as figures

    pairs = []

    def recording(a, b, n_boot):
        pairs.append((a, b))
        return paired_mean_diff(a, b, n_boot)

    monkeypatch.setattr(figures, "paired_mean_diff", recording)
    assert domain_differences(MODELS, tmp_path / "d.png", n_boot=100)
    # the students' chunks of both seeds against their own seed's baseline, pooled
    assert pairs == [([3.1, 3.0, 3.2, 3.0, 3.1, 3.0], [3.2, 3.4, 3.3, 3.3, 3.3, 3.1])]
    assert (tmp_path / "d.png").stat().st_size > 5000
    # no baseline: nothing to difference against, no figure
    assert not domain_differences(MODELS[2:], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_loss_curves_plot_the_students_ce_not_its_objective(tmp_path, monkeypatch):
    import matplotlib.axes

    plotted = []
    real = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, *a, **k: plotted.append((k.get("label"), list(a[1]))) or real(self, *a, **k))
    history = {"train_tokens_seen": 1000, "global_step": 10,
               "train_history": [{"step": 5, "loss": 2.0, "ce": 4.0, "kl": 0.1}, {"step": 10, "loss": 1.5, "ce": 3.5}],
               "eval_history": [{"step": 10, "eval_loss": 3.6}]}
    m = model("student:s1", "student", 1, {"p": "1"}, [3.0], history)
    loss_curves([m], tmp_path / "loss.png")
    assert ("student s1", [4.0, 3.5]) in plotted and ("student s1", [3.6]) in plotted
    assert phenomena_bars([m], "blimp", tmp_path / "bars.png", n_boot=50)


@pytest.mark.parametrize("suite", ["missing"])
def test_no_suite_no_bars(tmp_path, suite):
    assert not phenomena_bars(MODELS, suite, tmp_path / "x.png")
