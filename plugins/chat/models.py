"""Bodies of the chat routes: what useChat posts and what restores a chat."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from printz.pagination import DEFAULT_PAGE_SIZE, Cursor, PageLimit
from printz.validation import QueryModel

ConversationId = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")
]
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class UIMessageIn(BaseModel):
    """A message as useChat sends it; only user text parts are ever used."""

    model_config = ConfigDict(extra="ignore")

    id: MessageId | None = None
    role: Literal["user", "assistant", "system"]
    parts: list[dict[str, Any]] = Field(default_factory=list, max_length=100)


class ChatRequest(BaseModel):
    """``{id, messages, trigger, messageId?}`` plus any fields the front end adds."""

    model_config = ConfigDict(extra="ignore")

    id: ConversationId = Field(description="the conversation id (useChat's id)")
    messages: list[UIMessageIn] = Field(min_length=0, max_length=1000)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: MessageId | None = Field(
        None, description="with regenerate-message: the answer being replaced"
    )
    model: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        None, description="one of the server's allowed models; default otherwise"
    )


class ConversationPath(BaseModel):
    conversation_id: ConversationId


class ListQuery(QueryModel):
    # Unknown parameters are refused, as on every list.
    model_config = ConfigDict(extra="forbid")

    limit: PageLimit = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None


class ConversationOut(BaseModel):
    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    message_count: int


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class UIMessageOut(BaseModel):
    id: str
    role: Literal["user", "assistant"]
    parts: list[dict[str, Any]]
    metadata: dict[str, Any] = Field(default_factory=dict)


class ConversationDetail(ConversationOut):
    messages: list[UIMessageOut]
