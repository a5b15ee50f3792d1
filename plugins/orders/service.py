"""Orders in MongoDB: the only module that touches the `orders` collection.

Placing an order is idempotent per customer and key. The key and a hash of the
request live in the order itself under a unique index (customer, key), so
however many retries race, MongoDB lets exactly one order in and the others
read it back. A key is never released: keys are meant to be fresh random
values, one per order.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from plugins.catalog import service as catalog
from plugins.orders.status import (
    FIRST_STATUS,
    TOO_LATE_TO_CANCEL,
    allowed_moves,
    can_move,
)
from printz.errors import Conflict, NotFound, ValidationFailed
from printz.extensions import mongo
from printz.pagination import (
    InvalidCursor,
    decode_cursor,
    encode_cursor,
    moment_position,
    position_moment,
)

log = logging.getLogger(__name__)

NEWEST_FIRST = [("created_at", -1), ("_id", -1)]
# A status move re-reads and retries when another move won the race, so it is
# judged against the order as it now is; this bounds that under contention.
MOVE_ATTEMPTS = 3
_CURSOR_SHAPE = {"created_ms": int, "id": str}
_LINE_FIELDS = (
    "product",
    "product_name",
    "options",
    "quantity",
    "unit_price_cents",
    "line_total_cents",
)


def create_indexes(db: Database) -> None:
    db.orders.create_index(
        [("customer_id", 1), ("idempotency.key", 1)],
        unique=True,
        name="one_order_per_idempotency_key",
    )
    db.orders.create_index([("customer_id", 1), *NEWEST_FIRST], name="customer_newest")
    db.orders.create_index(
        [("customer_id", 1), ("status", 1), *NEWEST_FIRST],
        name="customer_status_newest",
    )
    db.orders.create_index([("status", 1), *NEWEST_FIRST], name="status_newest")
    db.orders.create_index(NEWEST_FIRST, name="newest")


def _now() -> datetime:
    # MongoDB keeps milliseconds; the cursor compares what was stored.
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _object_id(text: Any) -> ObjectId | None:
    try:
        return ObjectId(text)
    except (InvalidId, TypeError):
        return None


# -- shapes --------------------------------------------------------------------


def public_order(document: dict) -> dict[str, Any]:
    return {
        "id": str(document["_id"]),
        "customer_id": document["customer_id"],
        "items": [
            {name: line[name] for name in _LINE_FIELDS} for line in document["items"]
        ],
        "total_cents": document["total_cents"],
        "currency": document["currency"],
        "status": document["status"],
        "status_history": [
            {**change, "at": _iso(change["at"])}
            for change in document["status_history"]
        ],
        "shipping_address": document["shipping_address"],
        "quote_id": document.get("quote_id"),
        "created_at": _iso(document["created_at"]),
    }


def order_as_placed(document: dict) -> dict[str, Any]:
    """The order as the first answer showed it, for replaying that answer."""
    placed = public_order(document)
    placed["status_history"] = placed["status_history"][:1]
    placed["status"] = placed["status_history"][0]["status"]
    return placed


# -- placing -------------------------------------------------------------------


def request_fingerprint(request: dict) -> str:
    """A hash of the request's meaning: key order and ignored fields don't count."""
    canonical = json.dumps(
        request, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _priced(request: dict, customer_id: str) -> dict:
    """The quote-shaped pricing of an order: from its items, or a stored quote."""
    items, quote_id = request.get("items"), request.get("quote_id")
    if (items is None) == (quote_id is None):
        raise ValidationFailed(
            "Send the items to order, or the id of a quote; one of the two.",
            code="items_or_quote_required",
            fields={"items": "send items or quote_id, not both or neither"},
        )
    if items is not None:
        return catalog.quote_price(items, owner_id=customer_id, store=False)

    quote = catalog.get_quote(quote_id, customer_id)
    if quote is None:
        raise ValidationFailed(
            "There is no such quote.",
            code="quote_not_found",
            fields={"quote_id": "no quote with this id"},
        )
    if datetime.fromisoformat(quote["expires_at"]) <= datetime.now(UTC):
        raise ValidationFailed(
            "This quote has expired; ask for a new one.",
            code="quote_expired",
            fields={"quote_id": f"expired at {quote['expires_at']}"},
        )
    return quote


def _replay(earlier: dict, fingerprint: str) -> dict[str, Any]:
    if earlier["idempotency"]["request_sha256"] != fingerprint:
        raise ValidationFailed(
            "This Idempotency-Key was already used for another order; send a new "
            "key for a new order.",
            code="idempotency_key_reused",
        )
    return order_as_placed(earlier)


def place_order(
    customer: dict[str, str], key: str, request: dict
) -> tuple[dict[str, Any], bool]:
    """Place the order once per key: (the order, whether this was a replay).

    `customer` is the actor placing it ({id, role}); `request` the checked body.
    Prices come from the catalogue or the quote, never from the request.
    """
    fingerprint = request_fingerprint(request)
    identity = {"customer_id": customer["id"], "idempotency.key": key}
    earlier = mongo.db.orders.find_one(identity)
    if earlier is not None:
        return _replay(earlier, fingerprint), True

    pricing = _priced(request, customer["id"])
    now = _now()
    order = {
        "customer_id": customer["id"],
        "items": pricing["items"],
        "total_cents": pricing["total_cents"],
        "currency": pricing["currency"],
        "quote_id": request.get("quote_id"),
        "shipping_address": request["shipping_address"],
        "status": FIRST_STATUS,
        "status_history": [{"status": FIRST_STATUS, "at": now, "actor": customer}],
        "idempotency": {"key": key, "request_sha256": fingerprint},
        "created_at": now,
        "updated_at": now,
    }
    try:
        order["_id"] = mongo.db.orders.insert_one(order).inserted_id
    except DuplicateKeyError:
        # A retry with the same key got in first: answer as it was answered.
        return _replay(mongo.db.orders.find_one(identity), fingerprint), True

    log.info(
        "order %s placed by %s: %d lines, %d %s",
        order["_id"],
        customer["id"],
        len(order["items"]),
        order["total_cents"],
        order["currency"],
    )
    return public_order(order), False


# -- reading -------------------------------------------------------------------


def get_order_for_user(order_id: str, user_id: str) -> dict | None:
    """The customer's own order; None when malformed, missing or another's."""
    object_id = _object_id(order_id)
    if object_id is None or not isinstance(user_id, str):
        return None
    document = mongo.db.orders.find_one({"_id": object_id, "customer_id": user_id})
    return public_order(document) if document else None


def _visible_order(viewer: dict[str, str], order_id: str) -> dict:
    """The order document if the viewer may see it (theirs, or staff), else 404.

    Malformed, missing and other customers' orders get the same 404, so order
    ids cannot be probed.
    """
    object_id = _object_id(order_id)
    criteria: dict[str, Any] = {"_id": object_id}
    if viewer["role"] != "staff":
        criteria["customer_id"] = viewer["id"]
    document = mongo.db.orders.find_one(criteria) if object_id else None
    if document is None:
        raise NotFound("There is no such order.", code="order_not_found")
    return document


def find_order(viewer: dict[str, str], order_id: str) -> dict[str, Any]:
    return public_order(_visible_order(viewer, order_id))


def _older_than(cursor: str) -> dict:
    position = decode_cursor(cursor, _CURSOR_SHAPE)
    last_id = _object_id(position["id"])
    last_at = position_moment(position["created_ms"])
    if last_id is None:
        raise InvalidCursor()
    return {
        "$or": [
            {"created_at": {"$lt": last_at}},
            {"created_at": last_at, "_id": {"$lt": last_id}},
        ]
    }


def list_orders(
    customer_id: str | None,
    status: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Orders newest first, one page: {items, next_cursor}.

    `customer_id` None lists every customer's orders (staff only: the caller
    checks).
    """
    criteria: dict[str, Any] = {}
    if customer_id is not None:
        criteria["customer_id"] = customer_id
    if status is not None:
        criteria["status"] = status
    if cursor:
        criteria.update(_older_than(cursor))

    found = list(mongo.db.orders.find(criteria).sort(NEWEST_FIRST).limit(limit + 1))
    page = found[:limit]
    next_cursor = None
    if len(found) > limit:
        last = page[-1]
        next_cursor = encode_cursor(
            {"created_ms": moment_position(last["created_at"]), "id": str(last["_id"])}
        )
    return {"items": [public_order(doc) for doc in page], "next_cursor": next_cursor}


# -- moving through the status machine -----------------------------------------


def _move(
    document: dict,
    target: str,
    actor: dict,
    reason: str | None,
    refuse: Callable[[str], Conflict],
) -> dict[str, Any]:
    """Move the order to `target` if the machine allows it from where it is.

    The update is conditional on the status it was judged from, so of two
    concurrent moves only one applies; the other is judged again.
    `refuse(status)` builds the error for a move the machine does not allow.
    """
    for _ in range(MOVE_ATTEMPTS):
        current = document["status"]
        if not can_move(current, target):
            raise refuse(current)
        now = _now()
        change = {"status": target, "at": now, "actor": actor}
        if reason:
            change["reason"] = reason
        moved = mongo.db.orders.find_one_and_update(
            {"_id": document["_id"], "status": current},
            {
                "$set": {"status": target, "updated_at": now},
                "$push": {"status_history": change},
            },
            return_document=ReturnDocument.AFTER,
        )
        if moved is not None:
            log.info(
                "order %s: %s -> %s by %s %s",
                document["_id"],
                current,
                target,
                actor["role"],
                actor["id"],
            )
            return public_order(moved)
        document = mongo.db.orders.find_one({"_id": document["_id"]})
    raise Conflict(
        "The order kept changing while we updated it; try again.",
        code="order_busy",
    )


def _too_late_to_cancel(status: str) -> Conflict:
    return Conflict(
        TOO_LATE_TO_CANCEL.get(status, "This order can no longer be cancelled."),
        code="order_not_cancellable",
        extra={"status": status},
    )


def _illegal_change(target: str) -> Callable[[str], Conflict]:
    def refuse(status: str) -> Conflict:
        return Conflict(
            f"An order that is {status} cannot become {target}.",
            code="illegal_status_change",
            extra={"status": status, "allowed": allowed_moves(status)},
        )

    return refuse


def cancel_order(viewer: dict[str, str], order_id: str) -> dict[str, Any]:
    """Cancel before production; the viewer's own order, or any for staff."""
    document = _visible_order(viewer, order_id)
    return _move(document, "cancelled", viewer, None, _too_late_to_cancel)


def change_status(
    staff: dict[str, str], order_id: str, target: str, reason: str | None = None
) -> dict[str, Any]:
    """Staff move an order to its next status (or cancel it while allowed)."""
    document = _visible_order(staff, order_id)
    return _move(document, target, staff, reason, _illegal_change(target))
