"""The assistant's tools, run as the signed-in customer.

Each tool calls another plugin's service function, never its collections.
A tool that fails answers the model with an error result; it never raises
into the stream and never returns another customer's data.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from printz.errors import APIError
from printz.validation import field_errors

log = logging.getLogger(__name__)

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class ToolFailed(Exception):
    """A tool could not answer; the message is shown to the model and customer."""


class SearchProducts(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: ShortText = Field(description="words to look for in names and descriptions")
    category: ShortText | None = Field(None, description="a category slug")


class QuotePrice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    product: ShortText = Field(description="the product slug")
    quantity: int = Field(ge=1, le=100_000)
    options: dict[ShortText, ShortText] = Field(
        default_factory=dict, description="option group -> chosen value"
    )


class GetOrderStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")
    order_id: ShortText


def search_products(args: SearchProducts, user) -> dict[str, Any]:
    from plugins.catalog.service import search_products as find

    products = find(args.query, args.category, limit=5)
    return {
        "products": [
            {
                "slug": p["slug"],
                "name": p["name"],
                "category": p["category"],
                "options": {
                    group: [choice["value"] for choice in choices]
                    for group, choices in p.get("options", {}).items()
                },
                "price_tiers": p.get("price_tiers", []),
                "currency": p.get("currency"),
            }
            for p in products
        ]
    }


def quote_price(args: QuotePrice, user) -> dict[str, Any]:
    from plugins.catalog.service import quote_price as price

    item = {"product": args.product, "quantity": args.quantity, "options": args.options}
    return price([item], owner_id=user.id, store=True)


def get_order_status(args: GetOrderStatus, user) -> dict[str, Any]:
    from plugins.orders.service import get_order_for_user

    order = get_order_for_user(args.order_id, user.id)
    if order is None:
        raise ToolFailed("No order with that id belongs to this customer.")
    return {
        key: order.get(key)
        for key in ("id", "status", "status_history", "total_cents", "currency")
    } | {"items": order.get("items", [])}


TOOLS: dict[str, tuple[type[BaseModel], Callable[[Any, Any], dict[str, Any]], str]] = {
    "search_products": (
        SearchProducts,
        search_products,
        "Search the Printz catalogue by words and optional category.",
    ),
    "quote_price": (
        QuotePrice,
        quote_price,
        "Price a product for a quantity and chosen options; returns a stored quote.",
    ),
    "get_order_status": (
        GetOrderStatus,
        get_order_status,
        "Look up one of the signed-in customer's orders by its id.",
    ),
}


def tool_definitions() -> list[dict[str, Any]]:
    """The tools in the OpenAI function-calling format, the caller's own copy."""
    return copy.deepcopy(_tool_definitions())


@functools.cache
def _tool_definitions() -> list[dict[str, Any]]:
    # Made once: pydantic builds a JSON schema in about a millisecond per
    # model, and every chat turn sends them all before its first token.
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": model.model_json_schema(),
            },
        }
        for name, (model, _, description) in TOOLS.items()
    ]


def run_tool(name: str, arguments: Any, user) -> dict[str, Any]:
    """Run one tool for ``user``; raise ToolFailed with a short reason."""
    if name not in TOOLS:
        raise ToolFailed(f"There is no tool named {name!r}.")
    model, function, _ = TOOLS[name]
    try:
        args = model.model_validate(arguments)
    except ValidationError as error:
        fields = field_errors(error)
        raise ToolFailed(f"Invalid arguments: {fields}") from None
    try:
        return function(args, user)
    except ToolFailed:
        raise
    except APIError as error:
        detail = f" {error.fields}" if error.fields else ""
        raise ToolFailed(f"{error.message}{detail}") from None
