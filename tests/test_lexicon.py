"""The lexicon scorer: documented tokenisation, rates per 100 words, user files, NRC opt-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.scoring import SCORERS, ScorerContext, ScoringItem
from judges.lexicon import (
    NRC_NOTICE,
    Lexicon,
    LexiconParams,
    LexiconScorer,
    inflections,
    read_lexicon_file,
    tokenize,
)


def score(scorer: LexiconScorer, *texts: str):
    return scorer.score([ScoringItem(t, "prompt", f"g{i}", "c") for i, t in enumerate(texts)])


def user_scorer(tmp_path: Path, content: str, name: str = "lex.csv", **params) -> LexiconScorer:
    path = tmp_path / name
    path.write_text(content)
    return LexiconScorer(
        LexiconParams(lexicon=str(path), **params), ScorerContext(base_dir=tmp_path)
    )


def test_tokenisation_as_documented():
    assert tokenize("I’m NOT sure—it's well-known, isn't it? 42 times.") == [
        "i'm",
        "not",
        "sure",
        "it's",
        "well",
        "known",
        "isn't",
        "it",
        "42",
        "times",
    ]


def test_rate_per_100_words_hand_computed(tmp_path: Path):
    s = user_scorer(tmp_path, "term,category,weight\nafraid,fear,1\nscared,fear,0.5\nhappy,joy,1\n")
    (row,) = score(s, "I was afraid and then scared, then afraid again")  # 9 words
    assert row["fear"].value == pytest.approx(100 * (1 + 0.5 + 1) / 9)
    assert row["joy"].value == 0.0
    assert row["fear"].extra == {"matches": 2.5, "words": 9}


def test_phrases_longest_match_without_overlap(tmp_path: Path):
    s = user_scorer(
        tmp_path, "term,category\nnot sure,hedging\nsure,hedging\ni think,hedging\nthink,hedging\n"
    )
    (row,) = score(
        s, "I think I am not sure"
    )  # 6 words; "i think" + "not sure" (not "think", "sure")
    assert row["hedging"].value == pytest.approx(100 * 2 / 6)


def plain_count(terms: dict[tuple[str, ...], float], words: list[str]) -> float:
    """The matching rule read literally: at each word try every length, longest first."""
    longest = max((len(t) for t in terms), default=1)
    total, i = 0.0, 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            if (w := terms.get(tuple(words[i : i + n]))) is not None:
                total += w
                i += n
                break
        else:
            i += 1
    return total


VOCAB = st.sampled_from(["a", "b", "c", "d"])


@settings(max_examples=200, deadline=None)
@given(
    terms=st.dictionaries(
        st.lists(VOCAB, min_size=1, max_size=4).map(tuple),
        st.sampled_from([0.5, 1.0, 2.0]),
        max_size=8,
    ),
    words=st.lists(VOCAB, max_size=30),
)
def test_count_equals_the_plain_longest_match_rule(terms, words):
    lex = Lexicon("t", {"x": terms})
    assert lex.count(words, "x") == plain_count(terms, words)
    # a new term table for the same category is seen (the start index is per table)
    lex.categories = {"x": {**terms, ("a", "b"): 3.0}}
    assert lex.count(words, "x") == plain_count(lex.categories["x"], words)


def test_empty_text_is_null_with_reason_not_zero(tmp_path: Path):
    s = user_scorer(tmp_path, "term,category\nafraid,fear\n")
    (row,) = score(s, "  ... !! ")
    assert row["fear"].value is None
    assert row["fear"].reason == "empty text: no words to count"


def test_json_lexicon_with_weights_and_inflections(tmp_path: Path):
    s = user_scorer(
        tmp_path, json.dumps({"fear": {"panic": 2.0}, "joy": ["smile"]}), "lex.json", inflect=True
    )
    (row,) = score(s, "she panicked and smiled then smiles")  # 6 words
    assert row["fear"].value == pytest.approx(100 * 2.0 / 6)
    assert row["joy"].value == pytest.approx(100 * 2 / 6)


def test_tsv_and_category_subset(tmp_path: Path):
    s = user_scorer(
        tmp_path, "term\tcategory\nafraid\tfear\nhappy\tjoy\n", "lex.tsv", categories=["joy"]
    )
    assert s.metrics == ["joy"]
    (row,) = score(s, "happy and afraid")
    assert set(row) == {"joy"}


def test_inflections():
    assert inflections("scare") == {"scare", "scares", "scared", "scaring"}
    assert inflections("worry") == {"worry", "worries", "worried", "worrying"}
    assert inflections("panic") == {"panic", "panics", "panicked", "panicking"}
    assert inflections("rush") >= {"rushes", "rushed", "rushing"}


def test_bad_lexicon_file_errors_name_file_and_line(tmp_path: Path):
    path = tmp_path / "lex.csv"
    path.write_text("term,category,weight\nafraid,fear,lots\n")
    with pytest.raises(ValueError, match=r"lex.csv:2: weight 'lots' is not a number"):
        read_lexicon_file(path)
    problems = LexiconScorer.check(LexiconParams(lexicon="missing.csv"), tmp_path)
    assert problems and "missing.csv' not found" in problems[0]
    problems = LexiconScorer.check(LexiconParams(categories=["fearr"]), tmp_path)
    assert problems and "['fearr'] not in lexicon 'builtin'" in problems[0]


def test_builtin_lexicon_covers_the_six_emotions_and_hedging():
    s = LexiconScorer(LexiconParams(), ScorerContext())
    assert set(s.metrics) == {"fear", "joy", "anger", "sadness", "disgust", "surprise", "hedging"}
    (row,) = score(s, "I was terrified and scared, but I think it might be fine")
    assert row["fear"].value and row["fear"].value > 0
    assert row["hedging"].value and row["hedging"].value > 0
    assert row["joy"].value == 0.0
    # inflections are listed explicitly in the shipped file
    fear = s.lexicon.categories["fear"]
    assert {("scared",), ("scares",), ("terrified",)} <= set(fear)
    assert s.notice is None


def test_nrc_emolex_is_opt_in_with_its_licence(caplog):
    pytest.importorskip("nrclex", reason="the nrc extra (nrclex) is not installed")
    s = LexiconScorer(LexiconParams(lexicon="nrc-emolex", inflect=True), ScorerContext())
    assert {"fear", "joy", "anger", "sadness", "disgust", "surprise", "trust"} <= set(s.metrics)
    assert s.notice == NRC_NOTICE and "non-commercial" in NRC_NOTICE
    assert "non-commercial" in caplog.text
    from nrclex import NRCLex

    words = ["the", "abandoned", "house"]
    lex = NRCLex(None)
    lex.load_token_list(words)  # the package's own token lookup, as a reference
    (row,) = score(s, "the abandoned house")
    for cat in ("fear", "sadness", "anger"):
        assert row[cat].value == pytest.approx(100 * lex.raw_emotion_scores.get(cat, 0) / 3)


def test_lexicon_class_count_is_per_category():
    lex = Lexicon.from_rows("x", [("horrified", "fear", 1.0), ("horrified", "disgust", 1.0)])
    words = tokenize("horrified")
    assert lex.count(words, "fear") == lex.count(words, "disgust") == 1.0


def test_registered_by_entry_point():
    assert SCORERS.get("lexicon") is LexiconScorer


def test_opt_in_stance_categories_score_and_defaults_stay_the_seven():
    """first_person, trust, positive, negative and caution are shipped but opt-in: a spec
    naming no categories still reports the seven it reported before (same metrics, same
    scorer key), and naming them scores them."""
    default = LexiconScorer(LexiconParams(), ScorerContext())
    assert default.metrics == ["fear", "joy", "anger", "sadness", "disgust", "surprise", "hedging"]
    cats = ["first_person", "trust", "positive", "negative", "caution"]
    s = LexiconScorer(LexiconParams(categories=cats), ScorerContext())
    assert s.metrics == cats
    # 12 words: i'm, i, my -> 3 first person; trust, rely -> 2 trust; careful -> 1 caution
    (row,) = score(s, "I'm sure I trust my friend, rely on her, and stay careful.")
    assert row["first_person"].value == pytest.approx(100 * 3 / 12)
    assert row["trust"].value == pytest.approx(100 * 2 / 12)
    assert row["caution"].value == pytest.approx(100 * 1 / 12)
    assert row["negative"].value == 0.0
    (row,) = score(s, "A wonderful day, but the awful, terrible rain.")
    assert row["positive"].value == pytest.approx(100 * 1 / 8)
    assert row["negative"].value == pytest.approx(100 * 2 / 8)
    assert row["first_person"].value == 0.0
    first = s.lexicon.categories["first_person"]
    assert set(first) == {
        (w,) for w in ["i", "me", "my", "mine", "myself", "i'm", "i've", "i'd", "i'll"]
    }
    for cat in ("trust", "positive", "negative", "caution"):
        assert len(s.lexicon.categories[cat]) >= 90, cat
