"""Token usage of model calls and what it costs.

Usage arrives in several shapes: an OpenAI ``usage`` object (``prompt_tokens``,
``completion_tokens`` and their ``*_details``), a dict with the same names, or
a dict in Printz's own names (``input_tokens``, ``output_tokens``,
``cached_tokens``, ``reasoning_tokens``). ``TokenUsage.of`` reads them all.

Prices come from the ``PRINTZ_MODEL_PRICES`` setting, in US dollars per million
tokens: ``{"gpt-4o-mini": {"input": 0.15, "output": 0.6, "cached_input": 0.075}}``.
A model is priced by its exact name, else by the longest configured name it
starts with (``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``). Cached
input tokens are part of the input tokens and cost ``cached_input`` (``input``
when not given); reasoning tokens are part of the output tokens.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

PER_TOKENS = 1_000_000
PRICE_FIELDS = ("input", "output", "cached_input")


@dataclass(frozen=True)
class TokenUsage:
    """Tokens one model call (or a whole turn) used."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    @classmethod
    def of(cls, usage: Any) -> TokenUsage:
        """Read usage in any of the shapes the module docstring lists."""
        if isinstance(usage, TokenUsage):
            return usage
        if usage is None:
            return cls()
        return cls(
            input_tokens=_count(usage, "input_tokens", "prompt_tokens"),
            output_tokens=_count(usage, "output_tokens", "completion_tokens"),
            cached_tokens=_count(usage, "cached_tokens", "input_tokens_cached")
            or _count(_field(usage, "prompt_tokens_details"), "cached_tokens")
            or _count(_field(usage, "input_tokens_details"), "cached_tokens"),
            reasoning_tokens=_count(usage, "reasoning_tokens")
            or _count(_field(usage, "completion_tokens_details"), "reasoning_tokens")
            or _count(_field(usage, "output_tokens_details"), "reasoning_tokens"),
        )


def _field(source: Any, name: str) -> Any:
    if source is None:
        return None
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name, None)


def _count(source: Any, *names: str) -> int:
    for name in names:
        value = _field(source, name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return 0


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million tokens."""

    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True)
class Cost:
    """What a usage costs, in US dollars."""

    input: float
    output: float

    @property
    def total(self) -> float:
        return self.input + self.output


def parse_price_table(value: Any) -> dict[str, ModelPrice]:
    """The price table from its setting (a dict or JSON text); ValueError if bad."""
    if isinstance(value, str):
        return _parse_json_table(value)
    return _price_table(value or {})


@functools.lru_cache(maxsize=8)
def _parse_json_table(text: str) -> dict[str, ModelPrice]:
    try:
        loaded = json.loads(text) if text.strip() else {}
    except ValueError:
        raise ValueError("must be a JSON object of model -> prices") from None
    return _price_table(loaded)


def _price_table(loaded: Any) -> dict[str, ModelPrice]:
    if not isinstance(loaded, dict):
        raise ValueError("must be a JSON object of model -> prices")
    table = {}
    for model, prices in loaded.items():
        if not isinstance(prices, dict) or not {"input", "output"} <= prices.keys():
            raise ValueError(f"{model}: needs input and output prices per million")
        unknown = set(prices) - set(PRICE_FIELDS)
        if unknown:
            raise ValueError(
                f"{model}: unknown price {', '.join(sorted(unknown))}; "
                f"allowed: {', '.join(PRICE_FIELDS)}"
            )
        for name, price in prices.items():
            if (
                not isinstance(price, int | float)
                or isinstance(price, bool)
                or price < 0
            ):
                raise ValueError(f"{model}: {name} must be a number of dollars >= 0")
        table[str(model)] = ModelPrice(
            float(prices["input"]),
            float(prices["output"]),
            None
            if prices.get("cached_input") is None
            else float(prices["cached_input"]),
        )
    return table


def price_of(model: str | None, table: dict[str, ModelPrice]) -> ModelPrice | None:
    """The price of a model: its own entry, else the longest name it starts with."""
    if not model:
        return None
    if model in table:
        return table[model]
    prefixes = [name for name in table if model.startswith(name)]
    return table[max(prefixes, key=len)] if prefixes else None


def cost_of(usage: TokenUsage, price: ModelPrice) -> Cost:
    """Dollars for this usage at this price."""
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    input_cost = (usage.input_tokens - cached) * price.input + cached * cached_rate
    return Cost(
        input=input_cost / PER_TOKENS,
        output=usage.output_tokens * price.output / PER_TOKENS,
    )
