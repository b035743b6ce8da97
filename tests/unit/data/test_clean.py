from babyllama.data.clean import (clean_cbt, clean_open_subtitles, clean_qed, clean_spaces, clean_wikipedia,
                                  cleaner_for, split_documents)


def test_spaces_collapse_and_punctuation():
    assert clean_spaces("a  b\t\tc \u00a0 d .") == "a b c d."
    assert clean_spaces("Hi , there ; ok ! really ?") == "Hi, there; ok! really?"
    assert clean_spaces("line one  \n  line two") == "line one\nline two"


def test_spaces_keep_newlines_and_other_punctuation():
    assert clean_spaces("a\n\nb") == "a\n\nb"
    assert clean_spaces("( a ) : b") == "( a ) : b"


def test_wikipedia_headings():
    text = "= = = Early life = = =\nHe was born.\n= = History = =\n= Title ="
    assert clean_wikipedia(text) == "Early life\nHe was born.\nHistory\nTitle"


def test_open_subtitles_drops_credit_lines_only():
    text = "Subtitles by DramaFever\nHello there.\nITFC Subtitles Sync: Marocas62\nShe made her subtitle debut\nSync by X"
    assert clean_open_subtitles(text) == "Hello there.\nShe made her subtitle debut"


def test_qed_upper_case_lines_to_sentence_case():
    assert clean_qed("HELLO THERE. HOW ARE YOU?") == "Hello there. How are you?"
    assert clean_qed("Normal line, Mixed Case.") == "Normal line, Mixed Case."
    assert clean_qed("I THINK SO") == "I think so"


def test_cbt_joins_split_apostrophes():
    assert clean_cbt("I don 't know , the king 's man") == "I don't know, the king's man"
    assert clean_cbt("` But we must , ' said the Cat .") == "` But we must, ' said the Cat."


def test_cleaner_for_aliases_and_default():
    assert cleaner_for("wikipedia") is clean_wikipedia
    assert cleaner_for("my_own_domain") is clean_spaces
    assert cleaner_for("cbt") is clean_cbt


def test_split_documents():
    assert split_documents("cbt", "_BOOK_TITLE_ : a\nx\ny\n_BOOK_TITLE_ : b\nz") == ["x\ny", "z"]
    assert split_documents("wikipedia", "= A =\nfoo\n= = sub = =\nbar\n= B =\nbaz") == [
        "= A =\nfoo\n= = sub = =\nbar", "= B =\nbaz"]
    assert split_documents("simple_wiki", "a\nb\n\nc\n") == ["a\nb", "c"]
    assert split_documents("switchboard", "a\nb") == ["a\nb"]
