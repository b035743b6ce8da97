"""The learning-curve figure's chance lines follow each plotted suite's kind."""

import pytest

from babyllama.eval.learning_curve import CHANCE, chance_levels


def test_minimal_pairs_at_one_in_two_and_entity_tracking_at_one_in_five():
    assert chance_levels(["blimp_filtered", "supplement"]) == [50.0]
    assert chance_levels(["blimp_filtered", "entity_tracking_fast"]) == [20.0, 50.0]
    assert chance_levels(["entity_tracking"]) == [20.0]


@pytest.mark.parametrize("suite", ["wug_adj", "reading"])
def test_correlations_and_regressions_have_no_chance_line(suite):
    from babyllama.eval.suites import get_suite

    assert get_suite(suite).kind not in CHANCE
    with pytest.raises(KeyError):
        chance_levels([suite])
