"""The report's compute figures: the run's elapsed time beside the sum of its stages' wall times."""

import pytest

from babyllama.report.compute import elapsed_s


def test_side_by_side_stages_count_once_in_the_elapsed_time():
    # two stages of 100 s side by side, then one of 50 s: 250 s of stage time in 150 s
    stages = [("2026-12-04T10:01:40+00:00", 100.0), ("2026-12-04T10:01:40+00:00", 100.0),
              ("2026-12-04T10:02:30+00:00", 50.0)]
    assert elapsed_s(stages) == pytest.approx(150.0)


def test_time_between_runs_counts_and_offsets_are_honoured():
    # a stage finished at 10:00 UTC, the next run's stage (written with another UTC offset) an hour later
    stages = [("2026-12-04T10:00:00+00:00", 60.0), ("2026-12-04T12:00:00+01:00", 60.0)]
    assert elapsed_s(stages) == pytest.approx(3660.0)


def test_stages_without_a_time_are_left_out():
    assert elapsed_s([(None, 10.0), ("2026-12-04T10:00:00+00:00", None)]) is None
    assert elapsed_s([]) is None
    assert elapsed_s([(None, 10.0), ("2026-12-04T10:00:00+00:00", 30.0)]) == pytest.approx(30.0)


def test_the_hyperparameter_table_names_each_students_divergence(tmp_path):
    import json

    from babyllama.report.compute import hyperparameter_table

    models = []
    for name, role, distill in (("student:s1", "student", {"alpha": 0.5, "temperature": 2.0, "divergence": "skew_kl",
                                                            "skew": 0.1, "jsd_beta": 0.5}),
                                ("student:s2", "student", {"alpha": 0.5, "temperature": 2.0}),
                                ("baseline:s1", "baseline", {"alpha": 0.5, "temperature": 2.0})):
        d = tmp_path / name.replace(":", "-")
        d.mkdir()
        (d / "run_info.json").write_text(json.dumps({"config": {"distill": distill}}))
        models.append({"name": name, "role": role, "dir": d, "metrics": {"params": 1000}})
    rows = hyperparameter_table(models).markdown()
    assert "divergence" in rows[0]
    assert rows[2].rstrip(" |").endswith("skew_kl (skew 0.1)")
    assert rows[3].rstrip(" |").endswith("forward_kl")  # saved before divergences existed
    assert rows[4].rstrip(" |").endswith("-")
