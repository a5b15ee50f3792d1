"""Routes under /api/orders. Every one of them is for signed-in users."""

from __future__ import annotations

import logging
from functools import wraps

from flask import request
from flask_login import current_user
from flask_login.config import EXEMPT_METHODS
from flask_openapi3 import APIBlueprint, Tag
from flask_openapi3.request import validate_request

from plugins.orders import service
from plugins.orders.models import (
    IDEMPOTENCY_HEADER,
    IdempotencyHeader,
    Order,
    OrderBody,
    OrderPage,
    OrderPath,
    OrderQuery,
    PlacedOrder,
    StatusChangeBody,
)
from printz.errors import Forbidden, PreconditionRequired, Unauthorized
from printz.schemas import COMMON_ERRORS, SIGNED_IN, ErrorResponse

log = logging.getLogger(__name__)

bp = APIBlueprint(
    "orders",
    __name__,
    abp_tags=[Tag(name="orders", description="placing and following orders")],
    abp_responses={**COMMON_ERRORS, 401: ErrorResponse},
    abp_security=SIGNED_IN,
)


@bp.before_request
def _signed_in_only() -> None:
    """Sign-in is checked before any body is read: a visitor gets 401, not 422.

    A CORS preflight (OPTIONS) carries no cookie and must succeed, as it does
    for flask-login's ``login_required``, or no browser could order cross-site.
    """
    if request.method in EXEMPT_METHODS:
        return
    if not current_user.is_authenticated:
        raise Unauthorized()


def _actor() -> dict[str, str]:
    return {"id": current_user.id, "role": current_user.role}


def _idempotency_key_required(view):
    """428 without the header, before the body is validated (see validate_request)."""

    @wraps(view)
    def checked(*args, **kwargs):
        if not request.headers.get(IDEMPOTENCY_HEADER):
            raise PreconditionRequired(
                f"Send an {IDEMPOTENCY_HEADER} header (a fresh UUID per order) so "
                "a retry cannot place the order twice.",
                code="idempotency_key_required",
            )
        return view(*args, **kwargs)

    return checked


def _staff_only(view):
    """403 for customers, before the body is validated (see validate_request)."""

    @wraps(view)
    def checked(*args, **kwargs):
        if not current_user.is_staff:
            raise Forbidden("Only the shop's staff can do this.", code="staff_only")
        return view(*args, **kwargs)

    return checked


# validate_request() delays flask-openapi3's body validation into the view, so
# the checks stacked above it answer first.


@bp.post("/orders", responses={201: PlacedOrder, 428: ErrorResponse})
@_idempotency_key_required
@validate_request()
def place_order(header: IdempotencyHeader, body: OrderBody):
    """Place an order from items or a quote; prices are the server's.

    A retry with the same Idempotency-Key and body answers the first answer
    again, with `Idempotent-Replayed: true`; the same key with another body is
    a 422 `idempotency_key_reused`.
    """
    order, replayed = service.place_order(
        _actor(), header.idempotency_key, body.model_dump()
    )
    headers = {"Location": f"/api/orders/{order['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return order, 201, headers


@bp.get("/orders", responses={200: OrderPage, 403: ErrorResponse})
def list_orders(query: OrderQuery):
    """The caller's orders, newest first; staff may ask for `scope=all`."""
    customer_id = current_user.id
    if query.scope == "all":
        if not current_user.is_staff:
            raise Forbidden(
                "Only the shop's staff can list every order.", code="staff_only"
            )
        customer_id = None
    return service.list_orders(customer_id, query.status, query.limit, query.cursor)


@bp.get("/orders/<order_id>", responses={200: Order, 404: ErrorResponse})
def show_order(path: OrderPath):
    """One order: the caller's own (staff: any). Anyone else's order is a 404."""
    return service.find_order(_actor(), path.order_id)


@bp.post(
    "/orders/<order_id>/cancel",
    responses={200: Order, 404: ErrorResponse, 409: ErrorResponse},
)
def cancel_order(path: OrderPath):
    """Cancel an order that is not yet in production; later is a 409."""
    return service.cancel_order(_actor(), path.order_id)


@bp.post(
    "/orders/<order_id>/status",
    responses={200: Order, 403: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse},
)
@_staff_only
@validate_request()
def change_order_status(path: OrderPath, body: StatusChangeBody):
    """Staff: move an order to its next status, or cancel it while allowed."""
    return service.change_status(_actor(), path.order_id, body.status, body.reason)
