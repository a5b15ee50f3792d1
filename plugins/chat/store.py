"""Conversations, messages and the usage ledger: the chat plugin's collections.

Conversations are keyed by the id the front end chose (``useChat``'s ``id``)
together with their owner, so another customer who sends the same id finds
nothing. Messages are stored as UI message parts, the shape ``useChat``
restores. Every document carries ``expires_at`` for the retention TTL index.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
from flask import current_app
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from printz.errors import NotFound
from printz.extensions import mongo
from printz.pagination import (
    decode_cursor,
    encode_cursor,
    moment_position,
    position_moment,
)

TITLE_LENGTH = 80
# Tries at a free ``seq`` when messages of one conversation are added at once.
SEQ_ATTEMPTS = 8


def create_indexes(db: Database) -> None:
    db.chat_conversations.create_index(
        [("owner_id", 1), ("updated_at", -1), ("_id", -1)], name="owner_recent"
    )
    db.chat_conversations.create_index(
        "expires_at", expireAfterSeconds=0, name="retention"
    )
    db.chat_messages.create_index(
        [("conversation_id", 1), ("seq", 1)], unique=True, name="conversation_order"
    )
    db.chat_messages.create_index("expires_at", expireAfterSeconds=0, name="retention")
    db.chat_usage.create_index(
        [("owner_id", 1), ("day", 1)], unique=True, name="owner_day"
    )
    db.chat_usage.create_index("expires_at", expireAfterSeconds=0, name="retention")


def _now() -> datetime:
    return datetime.now(UTC)


def _expiry(now: datetime) -> datetime:
    return now + timedelta(days=current_app.config["PRINTZ_CHAT_RETENTION_DAYS"])


def get_conversation(conversation_id: str, owner_id: str) -> dict[str, Any] | None:
    """The owner's conversation; another customer's is as good as missing."""
    return mongo.db.chat_conversations.find_one(
        {"_id": conversation_id, "owner_id": owner_id}
    )


def open_conversation(
    conversation_id: str, owner_id: str, first_text: str, *, likely_new: bool = False
) -> dict:
    """The caller's conversation with this id, created on its first message.

    The id is the front end's (useChat's ``id``); the unique ``_id`` makes the
    first customer to use it its owner, and anyone else gets a 404. The
    ``likely_new`` (the client sent no history) tries the insert first, so a
    new conversation costs one round trip and an existing one two at most.
    """
    if not likely_new:
        existing = get_conversation(conversation_id, owner_id)
        if existing is not None:
            return existing
    now = _now()
    created = {
        "_id": conversation_id,
        "owner_id": owner_id,
        "title": " ".join(first_text.split())[:TITLE_LENGTH] or "New conversation",
        "created_at": now,
        "updated_at": now,
        "message_count": 0,
        "expires_at": _expiry(now),
    }
    try:
        mongo.db.chat_conversations.insert_one(created)
        return created
    except DuplicateKeyError:
        # Someone's conversation already has this id: the caller's, or (also
        # two first messages of the same customer at once) another's: a 404.
        existing = get_conversation(conversation_id, owner_id)
        if existing is None:
            raise NotFound(
                "No such conversation.", code="conversation_not_found"
            ) from None
        return existing


def messages_of(conversation: dict) -> list[dict[str, Any]]:
    return list(
        mongo.db.chat_messages.find({"conversation_id": conversation["_id"]}).sort(
            "seq", pymongo.ASCENDING
        )
    )


def add_message(
    conversation: dict,
    role: str,
    parts: list[dict[str, Any]],
    *,
    status: str = "complete",
    message_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Append a message at the end of the conversation.

    ``seq`` orders a conversation's messages: the time of adding in
    microseconds, one more on the rare tie (the unique index refuses a second
    message with the same ``seq``). It is not a counter read back from the
    conversation: that takes a findAndModify, which the embedded server runs
    as a scan of every conversation. Known limit: hosts whose clocks disagree
    by more than the time between two messages of one conversation could
    order them wrongly; a shared clock (NTP) keeps that far apart.
    """
    now = _now()
    document = {
        "_id": message_id or uuid.uuid4().hex,
        "conversation_id": conversation["_id"],
        "owner_id": conversation["owner_id"],
        "seq": time.time_ns() // 1000,
        "role": role,
        "parts": parts,
        "status": status,
        "created_at": now,
        "expires_at": _expiry(now),
        **fields,
    }
    touched = mongo.db.chat_conversations.update_one(
        {"_id": conversation["_id"]},
        {
            "$inc": {"message_count": 1},
            "$set": {"updated_at": now, "expires_at": _expiry(now)},
        },
    )
    if not touched.matched_count:
        raise NotFound("No such conversation.", code="conversation_not_found")
    for _ in range(SEQ_ATTEMPTS):
        try:
            mongo.db.chat_messages.insert_one(document)
            return document
        except DuplicateKeyError as error:
            if "seq" not in (error.details or {}).get("keyPattern", {}):
                raise
            document["seq"] += 1
    raise RuntimeError("no free position for a message in the conversation")


def delete_message(message_id: str) -> None:
    mongo.db.chat_messages.delete_one({"_id": message_id})


def delete_conversation(conversation_id: str, owner_id: str) -> None:
    result = mongo.db.chat_conversations.delete_one(
        {"_id": conversation_id, "owner_id": owner_id}
    )
    if not result.deleted_count:
        raise NotFound("No such conversation.", code="conversation_not_found")
    mongo.db.chat_messages.delete_many({"conversation_id": conversation_id})


_CURSOR_SHAPE = {"updated_ms": int, "id": str}


def list_conversations(owner_id: str, limit: int, cursor: str | None):
    """The owner's conversations, most recently active first, one page of them."""
    query: dict[str, Any] = {"owner_id": owner_id}
    if cursor:
        position = decode_cursor(cursor, _CURSOR_SHAPE)
        updated_at, key = position_moment(position["updated_ms"]), position["id"]
        query["$or"] = [
            {"updated_at": {"$lt": updated_at}},
            {"updated_at": updated_at, "_id": {"$lt": key}},
        ]
    found = list(
        mongo.db.chat_conversations.find(query)
        .sort([("updated_at", -1), ("_id", -1)])
        .limit(limit + 1)
    )
    page = found[:limit]
    next_cursor = None
    if len(found) > limit:
        last = page[-1]
        next_cursor = encode_cursor(
            {"updated_ms": moment_position(last["updated_at"]), "id": last["_id"]}
        )
    return page, next_cursor


# -- the usage ledger ---------------------------------------------------------


def usage_day(now: datetime | None = None) -> str:
    return (now or _now()).strftime("%Y-%m-%d")


def next_reset(now: datetime | None = None) -> datetime:
    now = now or _now()
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def claim_message(owner_id: str, message_limit: int, token_limit: int) -> bool:
    """Count one more message today if the owner is under both daily limits.

    One round trip when today's ledger exists (every message but the day's
    first); otherwise the ledger is made and the claim tried again.
    """
    if _claim(owner_id, message_limit, token_limit):
        return True
    now = _now()
    # Two first requests of the day may both upsert; one wins, the other's
    # duplicate key is harmless.
    with contextlib.suppress(DuplicateKeyError):
        mongo.db.chat_usage.update_one(
            {"owner_id": owner_id, "day": usage_day(now)},
            {
                "$setOnInsert": {
                    "messages": 0,
                    "tokens": 0,
                    "cost_usd": 0.0,
                    "expires_at": now + timedelta(days=400),
                }
            },
            upsert=True,
        )
    return _claim(owner_id, message_limit, token_limit)


def _claim(owner_id: str, message_limit: int, token_limit: int) -> bool:
    claimed = mongo.db.chat_usage.update_one(
        {
            "owner_id": owner_id,
            "day": usage_day(),
            "messages": {"$lt": message_limit},
            "tokens": {"$lt": token_limit},
        },
        {"$inc": {"messages": 1}},
    )
    return claimed.modified_count == 1


def record_usage(owner_id: str, tokens: int, cost_usd: float) -> None:
    mongo.db.chat_usage.update_one(
        {"owner_id": owner_id, "day": usage_day()},
        {"$inc": {"tokens": int(tokens), "cost_usd": float(cost_usd)}},
    )
