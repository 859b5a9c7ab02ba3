"""What judging costs: tokens per call from the responses' usage, and a price table.

Why: on a real benchmark the judge is the largest bill of the study (100k calls for 50k
generations judged for trait and coherence), and the batch APIs halve it. A run records,
per judge, the calls it sent online and through a batch API, the input and output tokens
the responses reported (``usage``: ``prompt_tokens``/``completion_tokens`` for OpenAI,
``input_tokens``/``output_tokens`` for Anthropic) and the calls the cache saved; the price
table turns tokens into dollars, so the manifest, the report and the run's last line can
say what a run cost and what it would have cost the other way.

Prices are per million tokens, online and batch, per model, shipped in
``prompts/judges/prices.toml`` with the date they were read; a judge's ``price`` param
overrides them. A model without a price has tokens but no cost (``None``), never 0.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from pydantic import Field

from harness.core.params import Strict
from prompts import data_path

PRICES_FILE = "judges/prices.toml"
PER = 1_000_000
SNAPSHOT_RE = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
"""A dated snapshot's suffix (``gpt-4o-mini-2024-07-18``, ``claude-haiku-4-5-20251001``):
such a model is priced as its entry without the suffix."""


class Price(Strict):
    """US dollars per million tokens (a judge's ``price`` param, or a table entry)."""

    input: float = Field(ge=0, description="Online input tokens, $ per million.")
    output: float = Field(ge=0, description="Online output tokens, $ per million.")
    batch_input: float | None = Field(None, ge=0, description="Batch API; default: input.")
    batch_output: float | None = Field(None, ge=0, description="Batch API; default: output.")

    def dollars(self, tokens: Tokens, batch: bool) -> float:
        rate_in, rate_out = self.input, self.output
        if batch:
            rate_in = self.input if self.batch_input is None else self.batch_input
            rate_out = self.output if self.batch_output is None else self.batch_output
        return (tokens.input_tokens * rate_in + tokens.output_tokens * rate_out) / PER


@dataclass
class Tokens:
    """Calls answered and the tokens their responses reported."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: Tokens) -> None:
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens

    def record(self, response: Any) -> None:
        """Count one answered call from its response body's ``usage`` (0 when absent)."""
        self.calls += 1
        inp, out = usage_tokens(response)
        self.input_tokens += inp
        self.output_tokens += out

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Tokens:
        data = data or {}
        return cls(
            int(data.get("calls", 0)),
            int(data.get("input_tokens", 0)),
            int(data.get("output_tokens", 0)),
        )


def usage_tokens(response: Any) -> tuple[int, int]:
    """(input, output) tokens of a response body of either API; (0, 0) without usage."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return 0, 0

    def num(*names: str) -> int:
        for n in names:
            v = usage.get(n)
            if isinstance(v, int | float) and v >= 0:
                return int(v)
        return 0

    return num("prompt_tokens", "input_tokens"), num("completion_tokens", "output_tokens")


@dataclass
class JudgeUsage:
    """One judge's calls in one or more scoring sessions: what the manifest stores."""

    online: Tokens = field(default_factory=Tokens)
    batch: Tokens = field(default_factory=Tokens)
    cache_hits: int = 0

    def add(self, other: JudgeUsage) -> None:
        self.online.add(other.online)
        self.batch.add(other.batch)
        self.cache_hits += other.cache_hits

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> JudgeUsage:
        data = data or {}
        online, batch = Tokens.of(data.get("online")), Tokens.of(data.get("batch"))
        return cls(online, batch, int(data.get("cache_hits", 0)))

    def summary(self, price: Price | None, price_source: str | None) -> dict[str, Any]:
        """The manifest's ``usage`` entry: counts, tokens, and dollars at ``price``.

        ``cost_usd`` is what was spent; ``cost_online_usd`` and ``cost_batch_usd`` what
        all answered calls would cost by each route (the comparison the batch API is for).
        """
        total = Tokens()
        total.add(self.online)
        total.add(self.batch)
        out: dict[str, Any] = {
            "calls": total.calls,
            "cache_hits": self.cache_hits,
            "input_tokens": total.input_tokens,
            "output_tokens": total.output_tokens,
            "online": asdict(self.online),
            "batch": asdict(self.batch),
            "cost_usd": None,
            "cost_online_usd": None,
            "cost_batch_usd": None,
            "price": None,
        }
        if price is not None:
            out["cost_usd"] = price.dollars(self.online, False) + price.dollars(self.batch, True)
            out["cost_online_usd"] = price.dollars(total, False)
            out["cost_batch_usd"] = price.dollars(total, True)
            out["price"] = {**price.model_dump(), "source": price_source}
        return out


@cache
def _table() -> dict[str, Any]:
    with data_path(PRICES_FILE).open("rb") as fh:
        return tomllib.load(fh)


def shipped_price(provider: str, model: str) -> tuple[Price | None, str | None]:
    """The shipped price of ``model`` (its exact name, or its name less a snapshot date) and
    where it came from, or (None, None) when the table has no entry."""
    table = _table()
    entries = table.get(provider) or {}
    name = model if model in entries else None
    snapshot = SNAPSHOT_RE.search(model)
    if name is None and snapshot is not None and model[: snapshot.start()] in entries:
        name = model[: snapshot.start()]
    if name is None:
        return None, None
    return Price(**entries[name]), f"prompts/{PRICES_FILE} ({table.get('date')}: {name})"


def judge_price(
    provider: str, model: str, override: Price | None
) -> tuple[Price | None, str | None]:
    """The price a judge is charged at: the spec's ``price`` if given, else the table's."""
    if override is not None:
        return override, "spec"
    return shipped_price(provider, model)


def estimate_calls_cost(
    calls: int, input_tokens: float, output_tokens: float, price: Price | None, batch: bool
) -> float | None:
    """Dollars for ``calls`` calls of typical size (``check``'s estimate before a run)."""
    if price is None:
        return None
    tokens = Tokens(calls, round(calls * input_tokens), round(calls * output_tokens))
    return price.dollars(tokens, batch)
