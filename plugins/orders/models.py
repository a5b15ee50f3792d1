"""Request and response bodies of the orders routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from plugins.orders.shipping import country_problem
from plugins.orders.status import OrderStatus
from printz.pagination import DEFAULT_PAGE_SIZE, Cursor, PageLimit
from printz.validation import QueryModel

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Room for a UUID, a ULID or a base64 token; nothing that could smuggle
# whitespace or control characters into logs.
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:+/=-]{1,255}$"

Line = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]
ExtraLine = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
ShortLine = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
]
PostalCode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{0,11}$"
    ),
]
CountryCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$"),
]


class IdempotencyHeader(BaseModel):
    idempotency_key: str = Field(
        alias=IDEMPOTENCY_HEADER,
        max_length=255,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        json_schema_extra={"example": "4f9d3c1e-2b7a-4e55-9a0c-8d1f6b2e7a31"},
        description="a fresh random key per order (a UUID); a retry sends the "
        "same key and body and gets the first answer again",
    )


class OrderItemIn(BaseModel):
    product: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="product slug"
    )
    options: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=40)],
        Annotated[str, StringConstraints(min_length=1, max_length=64)],
    ] = Field(default_factory=dict, max_length=20)
    quantity: Annotated[int, Field(strict=True, ge=1, le=100_000)]


class ShippingAddress(BaseModel):
    name: ShortLine
    line1: Line
    line2: ExtraLine | None = None
    city: ShortLine
    postal_code: PostalCode
    country: CountryCode = Field(description="ISO 3166-1 alpha-2 code, e.g. DE")

    @field_validator("country")
    @classmethod
    def _shipped_to(cls, code: str) -> str:
        problem = country_problem(code)
        if problem:
            raise ValueError(problem)
        return code


class OrderBody(BaseModel):
    """Items to price now, or the id of a quote to honour; not both."""

    # flask-openapi3 documents this as the body's example; the fuzzer starts
    # from it too, so some of its orders are placed and can then be moved.
    model_config = ConfigDict(
        openapi_extra={
            "examples": {
                "flyers": {
                    "summary": "250 flyers with the default options, to Berlin",
                    "value": {
                        "items": [{"product": "flyers", "quantity": 250}],
                        "shipping_address": {
                            "name": "Ada Lovelace",
                            "line1": "Hauptstraße 1",
                            "city": "Berlin",
                            "postal_code": "10115",
                            "country": "DE",
                        },
                    },
                }
            }
        }
    )

    items: list[OrderItemIn] | None = Field(None, min_length=1, max_length=50)
    quote_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    shipping_address: ShippingAddress


class OrderPath(BaseModel):
    order_id: str


class OrderQuery(QueryModel):
    # Unknown parameters are refused, so `status[$ne]=` cannot pass as no filter.
    model_config = ConfigDict(extra="forbid")

    status: OrderStatus | None = None
    limit: PageLimit = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None
    scope: Literal["mine", "all"] = Field(
        "mine", description="`all` (staff only): every customer's orders"
    )


class StatusChangeBody(BaseModel):
    model_config = ConfigDict(
        openapi_extra={"examples": {"paid": {"value": {"status": "paid"}}}}
    )

    status: OrderStatus = Field(description="the next status, or cancelled")
    reason: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None
    ) = None


class Actor(BaseModel):
    id: str
    role: Literal["customer", "staff"]


class StatusChange(BaseModel):
    status: OrderStatus
    at: datetime
    actor: Actor
    reason: str | None = None


class OrderLine(BaseModel):
    product: str
    product_name: str
    options: dict[str, str]
    quantity: int
    unit_price_cents: int
    line_total_cents: int


class Order(BaseModel):
    id: str
    customer_id: str
    items: list[OrderLine]
    total_cents: int
    currency: str
    status: OrderStatus
    status_history: list[StatusChange] = Field(description="oldest first")
    shipping_address: ShippingAddress
    quote_id: str | None = Field(None, description="the quote it was placed from")
    created_at: datetime


class PlacedOrder(Order):
    """The answer to placing an order: the order, and where to read it again."""

    model_config = ConfigDict(
        openapi_extra={
            "headers": {
                "Location": {
                    "description": "the order's URL",
                    "required": True,
                    "schema": {"type": "string"},
                },
                "Idempotent-Replayed": {
                    "description": "`true` when this answers a retry again",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            }
        }
    )


class OrderPage(BaseModel):
    items: list[Order]
    next_cursor: str | None = Field(description="null on the last page")
