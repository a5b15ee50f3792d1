"""Pricing one quote line from a product: pure arithmetic, no I/O.

A piece costs the unit price of the largest tier the quantity reaches, plus
the surcharge of each chosen option. A group the customer left out takes its
first choice, and the line says so, so nobody pays for an option unseen.
"""

from __future__ import annotations

from typing import Any


class LineProblems(Exception):
    """The line does not fit its product; `fields` names each problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(fields)
        self.fields = fields


def _listing(values: list[str]) -> str:
    return ", ".join(values)


def chosen_options(product: dict, options: dict[str, str], where: str):
    """The choice for every group of the product, or LineProblems."""
    groups = product["options"]
    problems = {
        f"{where}.options.{group}": (
            f"{product['name']} has no option {group!r}; "
            f"its options are: {_listing(list(groups))}"
        )
        for group in options
        if group not in groups
    }

    chosen = {}
    for group, choices in groups.items():
        value = options.get(group, choices[0]["value"])
        choice = next((c for c in choices if c["value"] == value), None)
        if choice is None:
            problems[f"{where}.options.{group}"] = (
                f"{value!r} is not a choice for {group}; choose one of: "
                f"{_listing([c['value'] for c in choices])}"
            )
        else:
            chosen[group] = choice

    if problems:
        raise LineProblems(problems)
    return chosen


def tier_for(product: dict, quantity: int, where: str) -> dict:
    """The largest price tier the quantity reaches, or LineProblems."""
    tiers = product["price_tiers"]
    reached = [tier for tier in tiers if tier["min_quantity"] <= quantity]
    if not reached:
        raise LineProblems(
            {
                f"{where}.quantity": (
                    f"{product['name']}: the smallest run is "
                    f"{tiers[0]['min_quantity']} pieces"
                )
            }
        )
    return reached[-1]


def price_line(product: dict, item: dict[str, Any], where: str) -> dict:
    """The priced line for `item`; `where` (``items.0``) prefixes problem fields."""
    problems: dict[str, str] = {}
    chosen: dict[str, dict] = {}
    tier: dict = {}
    try:
        chosen = chosen_options(product, item["options"], where)
    except LineProblems as error:
        problems.update(error.fields)
    try:
        tier = tier_for(product, item["quantity"], where)
    except LineProblems as error:
        problems.update(error.fields)
    if problems:
        raise LineProblems(problems)

    surcharge = sum(choice["surcharge_cents"] for choice in chosen.values())
    unit_price = tier["unit_price_cents"] + surcharge
    return {
        "product": product["slug"],
        "product_name": product["name"],
        "options": {group: choice["value"] for group, choice in chosen.items()},
        "quantity": item["quantity"],
        "tier_min_quantity": tier["min_quantity"],
        "tier_unit_price_cents": tier["unit_price_cents"],
        "surcharge_cents": surcharge,
        "unit_price_cents": unit_price,
        "line_total_cents": unit_price * item["quantity"],
    }
