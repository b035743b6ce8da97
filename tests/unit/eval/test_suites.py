import pytest

from babyllama.errors import UserError
from babyllama.eval.suites import SUITES, fingerprint, get_suite, load_items, suite_names
from babyllama.eval.tasks import read_ewok
from helpers import SHARED_EVAL, need_shared


def test_shared_suites_load():
    need_shared()
    blimp = load_items("blimp", SHARED_EVAL)
    assert len(blimp) == 67000 and len({i.paradigm for i in blimp}) == 67
    assert len({i.group for i in blimp}) == 13  # linguistics_term values in BLiMP's files
    assert len(load_items("blimp_filtered", SHARED_EVAL)) == 59875
    assert len(load_items("supplement", SHARED_EVAL)) == 5218
    ewok = read_ewok(SHARED_EVAL / "ewok_filtered" / "ewok_filtered.zip")
    assert len(ewok) == 7618 and ewok[0].context and ewok[0].choices[0].startswith(" ")
    sub = load_items("blimp", SHARED_EVAL, ["adjunct_island", "causative"])
    assert {i.paradigm for i in sub} == {"adjunct_island", "causative"}


def test_registry_names_every_suite_once_with_a_reader():
    assert suite_names() == list(SUITES)
    assert {"blimp", "blimp_filtered", "blimp_fast", "supplement", "supplement_fast", "ewok", "ewok_fast",
            "perplexity"} <= set(SUITES)
    for s in SUITES.values():
        assert s.description and (s.kind == "perplexity" or (s.path and s.reader))


def test_paths_are_suites_and_fingerprints_follow_content(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"sentence_good": "a", "sentence_bad": "b"}\n')
    assert get_suite(str(f)).kind == "pairs" and len(load_items(str(f))) == 1
    before = fingerprint(str(f), None)
    f.write_text('{"sentence_good": "a", "sentence_bad": "c"}\n')
    assert fingerprint(str(f), None) != before
    with pytest.raises(UserError, match="needs the eval data"):
        load_items("blimp", None)
    with pytest.raises(UserError, match="not found"):
        load_items("blimp", tmp_path)
    with pytest.raises(UserError, match="unknown suite 'nope'"):
        get_suite("nope")
