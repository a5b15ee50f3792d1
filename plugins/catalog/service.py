"""The catalogue and quotes: the only module that touches `products` and `quotes`.

Other plugins (orders, the chat assistant's tools) call the functions here and
get plain JSON-able dicts in the shapes of DESIGN.md. Reads of the catalogue go
through the Redis cache; prices are always computed from MongoDB, so a stale
cache entry can never change what a customer pays.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pydantic import ValidationError
from pymongo.database import Database

from plugins.catalog import cache
from plugins.catalog.models import QuoteBody
from plugins.catalog.pricing import LineProblems, price_line
from printz.errors import ValidationFailed
from printz.extensions import mongo
from printz.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_cursor,
    encode_cursor,
)
from printz.validation import field_errors

log = logging.getLogger(__name__)

QUOTE_VALID_FOR = timedelta(days=7)
# Expired quotes stay a while so an order placed late is told "expired", not
# "unknown", and support can still look them up; then MongoDB drops them.
QUOTE_KEPT_AFTER_EXPIRY = timedelta(days=30)
MAX_SEARCH_WORDS = 8

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_PRODUCT_FIELDS = {
    "_id": 0,
    "slug": 1,
    "name": 1,
    "category": 1,
    "description": 1,
    "currency": 1,
    "options": 1,
    "price_tiers": 1,
}
_CATALOGUE_ORDER = [("category", 1), ("slug", 1)]
_CURSOR_SHAPE = {"category": str, "slug": str}


def create_indexes(db: Database) -> None:
    db.products.create_index("slug", unique=True, name="slug_unique")
    db.products.create_index(_CATALOGUE_ORDER, name="category_slug")
    db.quotes.create_index(
        "expires_at",
        expireAfterSeconds=int(QUOTE_KEPT_AFTER_EXPIRY.total_seconds()),
        name="expires_at_ttl",
    )


def iso_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _now() -> datetime:
    # MongoDB keeps milliseconds; dropping the rest now makes what we answer
    # equal to what we stored.
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# -- the catalogue -------------------------------------------------------------


def _catalogue_filter(query: str | None, category: str | None) -> list[dict]:
    """Each word of the query (the first eight) must appear in name or description.

    The words are escaped: what a customer types is text, never a pattern.
    (The embedded development server has no text indexes, so this is a scan;
    with thousands of products a real text index would replace it.)
    """
    clauses: list[dict] = []
    for word in (query or "").split()[:MAX_SEARCH_WORDS]:
        pattern = {"$regex": re.escape(word), "$options": "i"}
        clauses.append({"$or": [{"name": pattern}, {"description": pattern}]})
    if category:
        clauses.append({"category": category})
    return clauses


def _after(position: dict[str, str]) -> dict:
    return {
        "$or": [
            {"category": {"$gt": position["category"]}},
            {"category": position["category"], "slug": {"$gt": position["slug"]}},
        ]
    }


def _load_page(
    query: str | None, category: str | None, limit: int, after: dict | None
) -> dict[str, Any]:
    clauses = _catalogue_filter(query, category)
    if after is not None:
        clauses.append(_after(after))
    criteria = {"$and": clauses} if clauses else {}

    found = list(
        mongo.db.products.find(criteria, _PRODUCT_FIELDS)
        .sort(_CATALOGUE_ORDER)
        .limit(limit + 1)
    )
    page = found[:limit]
    next_cursor = None
    if len(found) > limit:
        last = page[-1]
        next_cursor = encode_cursor(
            {"category": last["category"], "slug": last["slug"]}
        )
    return {"items": page, "next_cursor": next_cursor}


def list_products(
    query: str | None = None,
    category: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> dict[str, Any]:
    """One page of the catalogue in category then slug order: {items, next_cursor}.

    A cursor that this list did not give out is an InvalidCursor (422).
    """
    after = decode_cursor(cursor, _CURSOR_SHAPE) if cursor else None
    params = {"q": query, "category": category, "limit": limit, "after": after}
    return cache.cached(
        "products", params, lambda: _load_page(query, category, limit, after)
    )


def search_products(
    query: str | None = None, category: str | None = None, limit: int = 5
) -> list[dict]:
    """Products matching every word of `query`, optionally in one category."""
    problems = {
        name: "must be text"
        for name, value in (("query", query), ("category", category))
        if value is not None and not isinstance(value, str)
    }
    if problems:
        raise ValidationFailed(fields=problems)
    limit = max(1, min(int(limit), MAX_PAGE_SIZE))
    return list_products(query, category, limit)["items"]


def get_product(slug: str) -> dict | None:
    """One product with its options and price tiers, or None when unknown."""
    if not isinstance(slug, str) or not _SLUG.match(slug):
        return None
    return cache.cached(
        "product",
        slug,
        lambda: mongo.db.products.find_one({"slug": slug}, _PRODUCT_FIELDS),
    )


# -- quotes --------------------------------------------------------------------


def public_quote(document: dict) -> dict[str, Any]:
    quote_id = document.get("_id")
    return {
        "id": str(quote_id) if quote_id is not None else None,
        "items": document["items"],
        "total_cents": document["total_cents"],
        "currency": document["currency"],
        "created_at": iso_time(document["created_at"]),
        "expires_at": iso_time(document["expires_at"]),
    }


def _price_lines(items: list[dict]) -> tuple[list[dict], str]:
    """Priced lines and their currency; every problem of every line at once."""
    slugs = list({item["product"] for item in items})
    products = {
        product["slug"]: product
        for product in mongo.db.products.find({"slug": {"$in": slugs}}, _PRODUCT_FIELDS)
    }

    lines, problems = [], {}
    for number, item in enumerate(items):
        where = f"items.{number}"
        product = products.get(item["product"])
        if product is None:
            problems[f"{where}.product"] = "no product with this slug"
            continue
        try:
            lines.append(price_line(product, item, where))
        except LineProblems as error:
            problems.update(error.fields)
    if problems:
        raise ValidationFailed(fields=problems)
    # The seed gives every product the shop's one currency.
    return lines, products[lines[0]["product"]]["currency"]


def quote_price(
    items: list[dict], owner_id: str | None = None, store: bool = True
) -> dict:
    """Price items as a quote valid for QUOTE_VALID_FOR; stored unless told not.

    Raises ValidationFailed naming each bad field (``items.0.options.paper``).
    """
    try:
        checked = QuoteBody.model_validate({"items": items})
    except ValidationError as error:
        raise ValidationFailed(fields=field_errors(error)) from None
    lines, currency = _price_lines([item.model_dump() for item in checked.items])

    now = _now()
    quote = {
        "owner_id": owner_id,
        "items": lines,
        "total_cents": sum(line["line_total_cents"] for line in lines),
        "currency": currency,
        "created_at": now,
        "expires_at": now + QUOTE_VALID_FOR,
    }
    if store:
        quote["_id"] = mongo.db.quotes.insert_one(quote).inserted_id
        log.info("quote %s: %d lines", quote["_id"], len(lines))
    return public_quote(quote)


def get_quote(quote_id: str, owner_id: str | None) -> dict | None:
    """A stored quote this customer may order from: their own or an anonymous one.

    None when the id is malformed, unknown or another customer's quote.
    Expired quotes are returned: the caller decides what expiry means.
    """
    try:
        object_id = ObjectId(quote_id)
    except (InvalidId, TypeError):
        return None
    document = mongo.db.quotes.find_one(
        {"_id": object_id, "owner_id": {"$in": [owner_id, None]}}
    )
    return public_quote(document) if document else None
