"""Routes under /api: the catalogue and quotes."""

from __future__ import annotations

import logging

from flask_login import current_user
from flask_openapi3 import APIBlueprint, Tag

from plugins.catalog import service
from plugins.catalog.models import (
    Product,
    ProductPage,
    ProductPath,
    ProductQuery,
    Quote,
    QuoteBody,
)
from printz.errors import NotFound
from printz.schemas import COMMON_ERRORS, SIGNED_IN_OR_NOT, ErrorResponse

log = logging.getLogger(__name__)

bp = APIBlueprint(
    "catalog",
    __name__,
    abp_tags=[Tag(name="catalog", description="products and quotes")],
    abp_responses=COMMON_ERRORS,
)


@bp.get("/products", responses={200: ProductPage})
def list_products(query: ProductQuery):
    """The catalogue: search words, a category, and a cursor for the next page."""
    return service.list_products(query.q, query.category, query.limit, query.cursor)


@bp.get("/products/<slug>", responses={200: Product, 404: ErrorResponse})
def show_product(path: ProductPath):
    """One product with its options and price tiers."""
    product = service.get_product(path.slug)
    if product is None:
        raise NotFound("There is no such product.", code="product_not_found")
    return product


@bp.post("/quotes", responses={201: Quote}, security=SIGNED_IN_OR_NOT)
def create_quote(body: QuoteBody):
    """Price items; open to visitors, owned by the customer when signed in.

    The quote is kept for seven days, and an order can be placed from it.
    """
    owner_id = current_user.id if current_user.is_authenticated else None
    items = [item.model_dump() for item in body.items]
    return service.quote_price(items, owner_id=owner_id), 201
