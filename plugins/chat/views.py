"""Routes: POST /api/chat (the stream) and the conversations a customer keeps."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from flask import Response, current_app, stream_with_context
from flask_login import current_user, login_required
from flask_openapi3 import APIBlueprint, Tag

from plugins.chat import store
from plugins.chat.history import model_messages, text_of
from plugins.chat.model import allowed_models, model_client
from plugins.chat.models import (
    ChatRequest,
    ConversationDetail,
    ConversationPage,
    ConversationPath,
    ListQuery,
)
from plugins.chat.protocol import HEADERS
from plugins.chat.turn import ChatTurn
from printz.errors import Conflict, NotFound, RateLimited, ValidationFailed
from printz.observability import ai
from printz.schemas import COMMON_ERRORS, SIGNED_IN, ErrorResponse

log = logging.getLogger(__name__)

bp = APIBlueprint(
    "chat",
    __name__,
    abp_tags=[Tag(name="chat")],
    abp_responses=COMMON_ERRORS,
    abp_security=SIGNED_IN,
)

STREAM_RESPONSE = {
    "description": "AI SDK UI message stream v1 (Server-Sent Events)",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def _new_user_text(body: ChatRequest) -> str:
    """The text of the last user message; nothing else a client sends is used."""
    for message in reversed(body.messages):
        if message.role == "user":
            text = text_of(message.parts).strip()
            limit = current_app.config["PRINTZ_CHAT_MAX_INPUT_CHARS"]
            if not text:
                break
            if len(text) > limit:
                raise ValidationFailed(
                    fields={"messages": f"a message may have {limit} characters"}
                )
            return text
    raise ValidationFailed(fields={"messages": "no user message with text to answer"})


def _choose_model(body: ChatRequest) -> str:
    allowed = allowed_models()
    if body.model is None:
        return allowed[0]
    if body.model not in allowed:
        raise ValidationFailed(fields={"model": "must be one of " + ", ".join(allowed)})
    return body.model


def _claim_quota() -> None:
    config = current_app.config
    if store.claim_message(
        current_user.id,
        config["PRINTZ_CHAT_DAILY_MESSAGES"],
        config["PRINTZ_CHAT_DAILY_TOKENS"],
    ):
        return
    reset = store.next_reset()
    seconds = max(1, int((reset - datetime.now(UTC)).total_seconds()))
    log.warning("daily chat limit reached for user %s", current_user.id)
    raise RateLimited(
        "Your daily limit for the shopping assistant is reached.",
        code="chat_quota_exceeded",
        headers={"Retry-After": str(seconds)},
        extra={"reset_at": reset.isoformat()},
    )


def _drop_answer_to_regenerate(conversation: dict, message_id: str | None) -> None:
    """``regenerate-message``: the last answer goes; the model answers again.

    When the last message is the customer's (the model failed before it said
    anything), there is nothing to drop and the model simply answers it.
    """
    messages = store.messages_of(conversation)
    if not messages:
        raise Conflict(
            "There is no answer to regenerate.", code="nothing_to_regenerate"
        )
    last = messages[-1]
    if last["role"] == "user":
        return
    if message_id is not None and message_id != last["_id"]:
        raise Conflict(
            "Only the last answer can be regenerated.", code="not_the_last_answer"
        )
    store.delete_message(last["_id"])


@bp.post(
    "/chat",
    responses={200: STREAM_RESPONSE, 401: ErrorResponse, 404: ErrorResponse},
)
@login_required
def chat(body: ChatRequest):
    """Answer the customer's new message as an AI SDK UI message stream."""
    model_client()  # 503 before anything else when no model is configured
    model = _choose_model(body)
    ai.add_ai_breadcrumb("AI request received", conversation_id=body.id, model=model)

    if body.trigger == "regenerate-message":
        conversation = store.get_conversation(body.id, current_user.id)
        if conversation is None:
            raise NotFound("No such conversation.", code="conversation_not_found")
        _claim_quota()
        _drop_answer_to_regenerate(conversation, body.messageId)
        history = store.messages_of(conversation)
        store_message = None
    else:
        text = _new_user_text(body)
        # useChat sends the whole history: a lone message most likely opens
        # a new conversation (a guess that only orders the round trips).
        conversation = store.open_conversation(
            body.id, current_user.id, text, likely_new=len(body.messages) == 1
        )
        _claim_quota()
        parts = [{"type": "text", "text": text}]
        # A new conversation has no history to read.
        new = not conversation.get("message_count")
        earlier = [] if new else store.messages_of(conversation)
        history = [*earlier, {"role": "user", "parts": parts}]

        def store_message() -> None:
            store.add_message(conversation, "user", parts)

    turn = ChatTurn(
        conversation=conversation,
        user=current_user._get_current_object(),
        model=model,
        messages=model_messages(history),
        assistant_message_id=uuid.uuid4().hex,
    )
    # The customer's message is stored while the model is asked.
    turn.prime(meanwhile=store_message)
    body_stream = ai.ai_stream(stream_with_context(turn.body()), turn.trace)
    return Response(body_stream, status=200, headers=HEADERS)


@bp.get("/conversations", responses={200: ConversationPage, 401: ErrorResponse})
@login_required
def list_conversations(query: ListQuery):
    """The customer's conversations, most recently active first."""
    page, next_cursor = store.list_conversations(
        current_user.id, query.limit, query.cursor
    )
    return {"items": [_conversation_out(c) for c in page], "next_cursor": next_cursor}


@bp.get(
    "/conversations/<conversation_id>",
    responses={200: ConversationDetail, 401: ErrorResponse, 404: ErrorResponse},
)
@login_required
def get_conversation(path: ConversationPath):
    """A conversation with its messages in the shape useChat restores."""
    conversation = store.get_conversation(path.conversation_id, current_user.id)
    if conversation is None:
        raise NotFound("No such conversation.", code="conversation_not_found")
    messages = [
        {
            "id": message["_id"],
            "role": message["role"],
            "parts": message["parts"],
            "metadata": _message_metadata(message),
        }
        for message in store.messages_of(conversation)
    ]
    return _conversation_out(conversation) | {"messages": messages}


@bp.delete(
    "/conversations/<conversation_id>",
    responses={204: None, 401: ErrorResponse, 404: ErrorResponse},
)
@login_required
def delete_conversation(path: ConversationPath):
    """Delete a conversation and all its messages."""
    store.delete_conversation(path.conversation_id, current_user.id)
    return Response(status=204)


def _conversation_out(conversation: dict) -> dict:
    return {
        "id": conversation["_id"],
        "title": conversation["title"],
        "created_at": conversation["created_at"].isoformat(),
        "updated_at": conversation["updated_at"].isoformat(),
        "message_count": conversation.get("message_count", 0),
    }


def _message_metadata(message: dict) -> dict:
    metadata = {"status": message.get("status", "complete")}
    if message["role"] == "assistant":
        usage = message.get("usage") or {}
        metadata.update(
            model=message.get("model"),
            usage={
                "inputTokens": usage.get("input_tokens", 0),
                "outputTokens": usage.get("output_tokens", 0),
                "totalTokens": usage.get("total_tokens", 0),
            },
        )
    return metadata
