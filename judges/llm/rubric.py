"""Judge rubrics: template files with named placeholders, rendered with delimited inputs.

Why this module exists: what the judge reads defines the number it returns, so a rubric is
versioned (its SHA-256 enters every cache key and score record), its placeholders are
checked when the spec loads, and the texts it embeds cannot pass for instructions.

Rendering rules (they define the prompt, so they are documented here):

- Placeholders are ``{trait}``, ``{definition}``, ``{question}`` and ``{response}``. Any
  other ``{lowercase_name}`` is an error; other braces (JSON examples) are left alone.
- ``{question}`` becomes ``<question>\\n...\\n</question>`` and ``{response}`` becomes
  ``<response>\\n...\\n</response>``: the scorer adds the tags, so a user template cannot
  forget them. Inside the inserted texts every opener of a look-alike of these tags
  (``<response``, ``</question`` ..., any case, spaces allowed) becomes ``‹`` (U+2039), so
  a response cannot close its block early and continue as instructions. A reader (the
  judge model) is lenient, so look-alikes are found the way it would read them: the text
  is first NFKC-normalised (fullwidth ``＜``, small-form ``﹤``, mathematical letters become
  ASCII) and stripped of invisible format characters (zero-width space, joiners, word
  joiner, soft hyphen, byte-order mark, bidi controls: Unicode category Cf); tag names
  match with Cyrillic and Greek look-alike letters (``rеsponse`` with a Cyrillic ``е``);
  and an entity-encoded opener (``&lt;``, ``&#60;``, ``&#x3c;``) counts as ``<``. Emoji
  joined by ZWJ come apart into their parts; the judge still reads them.
- The response is cut at ``max_response_chars`` characters and the marker
  ``[... truncated: N more characters]`` is appended inside the block; the question is
  cut at ``max_question_chars`` the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from harness.config.paths import resolve_data_path
from prompts import data_path

PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
CONFUSABLES = {
    "e": "\u0435\u0415\u0395\u04bd",
    "s": "\u0455\u0405",
    "p": "\u0440\u0420\u03c1\u03a1",
    "o": "\u043e\u041e\u03bf\u039f\u0585",
    "n": "\u0578\u039d",
    "r": "\u0433",
    "u": "\u03c5\u057d\u1d1c",
    "q": "\u051b\u051a",
    "t": "\u0442\u0422\u03c4\u03a4",
    "i": "\u0456\u0406\u03b9\u0399\u0131\u04cf",
}
"""Cyrillic, Greek and Armenian letters that look like the Latin letters of the tag names
(after NFKC, which folds fullwidth and mathematical letters itself)."""


def _lookalike(word: str) -> str:
    return "".join(f"[{re.escape(c)}{CONFUSABLES.get(c, '')}]" for c in word)


TAG_OPENER = r"(?:<|&lt;?|&#0*60;?|&#x0*3c;?)"
"""``<`` and its HTML entities (named, decimal, hex; the semicolon optional, as browsers
read them)."""
TAG_LOOKALIKE_RE = re.compile(
    TAG_OPENER
    + r"(?=\s*[/\u2044\u2215\u29f8]?\s*(?:"
    + "|".join(_lookalike(w) for w in ("question", "response"))
    + r")(?![A-Za-z0-9_]))",
    re.IGNORECASE,
)
KNOWN = frozenset({"trait", "definition", "question", "response"})
REQUIRED = {
    "trait": frozenset({"trait", "response"}),
    "coherence": frozenset({"response"}),
}
"""Placeholders a template of each kind must contain."""

BUILTIN_TEMPLATES = {"trait": "judges/trait.md", "coherence": "judges/coherence.md"}
TRUNCATION_MARKER = "[... truncated: {n} more characters]"


class RubricError(ValueError):
    """A template or definition problem, phrased for the spec's error list."""


@dataclass(frozen=True)
class Rubric:
    """One loaded template: its text, where it came from, and its hash."""

    kind: str
    """``trait`` or ``coherence``: which placeholders are required."""
    text: str
    source: str
    """Built-in name or resolved file path (for the manifest)."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(
        self,
        *,
        question: str,
        response: str,
        trait: str = "",
        definition: str = "",
        max_response_chars: int,
        max_question_chars: int,
    ) -> tuple[str, bool]:
        """The judge prompt and whether the response was truncated."""
        resp, truncated = truncate(response, max_response_chars)
        quest, _ = truncate(question, max_question_chars)
        values = {
            "trait": trait,
            "definition": definition,
            "question": f"<question>\n{defuse(quest)}\n</question>",
            "response": f"<response>\n{defuse(resp)}\n</response>",
        }
        # One pass over the template: inserted texts are never scanned for placeholders.
        out = PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), self.text)
        return out, truncated


def defuse(text: str) -> str:
    """Neutralise look-alikes of the delimiter tags inside an inserted text: NFKC, drop
    invisible format characters, then replace each tag opener (``<`` or its entity) with
    ``‹``."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return TAG_LOOKALIKE_RE.sub("\u2039", text)


def truncate(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return text[:limit] + " " + TRUNCATION_MARKER.format(n=len(text) - limit), True


def check_template(kind: str, text: str, source: str) -> list[str]:
    """Problems with a template's placeholders (empty list when it is usable)."""
    found = set(PLACEHOLDER_RE.findall(text))
    problems = []
    unknown = sorted(found - KNOWN)
    if unknown:
        problems.append(
            f"{source}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"allowed: {', '.join('{' + k + '}' for k in sorted(KNOWN))}"
        )
    missing = sorted(REQUIRED[kind] - found)
    if missing:
        problems.append(
            f"{source}: a {kind} template must contain {', '.join('{' + m + '}' for m in missing)}"
        )
    return problems


def load_rubric(kind: str, value: str, base_dir: Path) -> Rubric:
    """A built-in rubric (``trait``/``coherence``) or a template file; checked."""
    rel = BUILTIN_TEMPLATES.get(value)
    if rel is not None:
        path: Path | None = data_path(rel)
        source = value
    else:
        path = resolve_data_path(value, base_dir)
        source = str(path) if path else value
    if path is None or not path.is_file():
        raise RubricError(
            f"template '{value}' not found (looked next to the spec in {base_dir} and in "
            f"the shipped prompts/; built-in: {', '.join(BUILTIN_TEMPLATES)})"
        )
    text = path.read_text(encoding="utf-8")
    problems = check_template(kind, text, source)
    if problems:
        raise RubricError("; ".join(problems))
    return Rubric(kind, text, source)


def builtin_definitions() -> dict[str, str]:
    """The shipped one-sentence trait definitions (``prompts/judges/traits.json``)."""
    data = json.loads(data_path("judges/traits.json").read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}
