"""Shapes of the catalogue: the data file, request bodies and answers."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from printz.pagination import DEFAULT_PAGE_SIZE, Cursor, PageLimit
from printz.validation import QueryModel

MIN_QUANTITY = 1
MAX_QUANTITY = 100_000
MAX_QUOTE_ITEMS = 50

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
OptionName = Annotated[str, StringConstraints(min_length=1, max_length=40)]
OptionValue = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Quantity = Annotated[
    int,
    # Strict: "250", 250.0 and true are not quantities a customer typed.
    Field(strict=True, ge=MIN_QUANTITY, le=MAX_QUANTITY, description="pieces"),
]
Cents = Annotated[int, Field(ge=0, description="integer cents")]


class OptionChoice(BaseModel):
    value: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    label: str
    surcharge_cents: Cents = Field(description="added to the price of each piece")


class PriceTier(BaseModel):
    min_quantity: Annotated[int, Field(ge=MIN_QUANTITY, le=MAX_QUANTITY)]
    unit_price_cents: Annotated[int, Field(gt=0)]


class Product(BaseModel):
    """A product as the catalogue serves it."""

    slug: Slug
    name: str
    category: Slug
    description: str
    currency: str = Field(description="ISO 4217 code of every price here")
    options: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")],
        list[OptionChoice],
    ] = Field(description="choices per option group; the first is the default")
    price_tiers: list[PriceTier] = Field(
        description="price per piece from each quantity up; the first is the minimum"
    )

    @model_validator(mode="after")
    def _check_offer(self) -> Product:
        """Reject a data file a customer could not be sensibly priced from."""
        for group, choices in self.options.items():
            values = [choice.value for choice in choices]
            if not values or len(set(values)) != len(values):
                raise ValueError(f"option {group!r} needs distinct choices")
        tiers = self.price_tiers
        if not tiers:
            raise ValueError("a product needs at least one price tier")
        for smaller, larger in pairwise(tiers):
            if larger.min_quantity <= smaller.min_quantity:
                raise ValueError("price tiers must go up in quantity")
            if larger.unit_price_cents >= smaller.unit_price_cents:
                raise ValueError("a larger run must be cheaper per piece")
        return self


class CatalogueFile(BaseModel):
    """The seed data file: one currency for the whole shop."""

    model_config = ConfigDict(extra="forbid")

    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    products: list[dict]


class ProductPage(BaseModel):
    items: list[Product]
    next_cursor: str | None = Field(description="null on the last page")


class ProductQuery(QueryModel):
    # Unknown parameters are refused, so `q[$ne]=` cannot pass as no filter.
    model_config = ConfigDict(extra="forbid")

    q: str | None = Field(
        None,
        max_length=200,
        description="words that must all appear in the name or description",
    )
    category: str | None = Field(None, max_length=64)
    limit: PageLimit = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None


class ProductPath(BaseModel):
    slug: str = Field(max_length=200)


class QuoteItemIn(BaseModel):
    product: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="product slug"
    )
    options: dict[OptionName, OptionValue] = Field(
        default_factory=dict,
        max_length=20,
        description="option group -> choice value; a group left out takes its "
        "first choice",
    )
    quantity: Quantity


class QuoteBody(BaseModel):
    # flask-openapi3 documents this as the body's example. It is a line of the
    # seeded catalogue, so the fuzzer also starts from a quote that can succeed.
    model_config = ConfigDict(
        openapi_extra={
            "examples": {
                "flyers": {
                    "summary": "250 A5 flyers on silk paper",
                    "value": {
                        "items": [
                            {
                                "product": "flyers",
                                "options": {"size": "a5", "paper": "170gsm-silk"},
                                "quantity": 250,
                            }
                        ]
                    },
                }
            }
        }
    )

    items: list[QuoteItemIn] = Field(min_length=1, max_length=MAX_QUOTE_ITEMS)


class QuoteLine(BaseModel):
    product: str
    product_name: str
    options: dict[str, str] = Field(description="every group, defaults included")
    quantity: int
    tier_min_quantity: int = Field(description="the price tier this quantity got")
    tier_unit_price_cents: int
    surcharge_cents: int = Field(description="the chosen options' surcharges")
    unit_price_cents: int = Field(description="tier price plus surcharges")
    line_total_cents: int


class Quote(BaseModel):
    id: str | None = Field(description="null only when the quote was not stored")
    items: list[QuoteLine]
    total_cents: int
    currency: str
    created_at: datetime
    expires_at: datetime
