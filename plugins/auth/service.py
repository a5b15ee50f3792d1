"""Accounts in MongoDB: the only module that touches the users collection."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from bson import ObjectId
from bson.errors import InvalidId
from flask import Flask
from flask_login import UserMixin
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from printz.errors import Conflict
from printz.extensions import login_manager, mongo

log = logging.getLogger(__name__)

ROLES = ("customer", "staff")

_hasher = PasswordHasher()  # argon2id with the library's current defaults
# Verified when the email is unknown, so both answers take the same time.
_DUMMY_HASH = _hasher.hash("printz-dummy-password-for-timing")


@dataclass
class Account(UserMixin):
    """A signed-up customer or staff member, as flask-login sees it."""

    id: str
    email: str
    name: str
    role: str

    @property
    def is_staff(self) -> bool:
        return self.role == "staff"

    def public(self) -> dict[str, str]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
        }


def email_key(email: str) -> str:
    return email.strip().lower()


def _account(document: dict) -> Account:
    return Account(
        id=str(document["_id"]),
        email=document["email"],
        name=document["name"],
        role=document.get("role", "customer"),
    )


def create_indexes(db: Database) -> None:
    db.users.create_index("email_key", unique=True, name="email_key_unique")


def create_account(email: str, password: str, name: str, role: str = "customer"):
    """Store a new account; a taken email (any case) is a 409."""
    document = {
        "email": email.strip(),
        "email_key": email_key(email),
        "name": name,
        "role": role,
        "password_hash": _hasher.hash(password),
        "created_at": datetime.now(UTC),
    }
    try:
        result = mongo.db.users.insert_one(document)
    except DuplicateKeyError:
        raise Conflict(
            "An account with this email already exists.", code="email_taken"
        ) from None
    document["_id"] = result.inserted_id
    log.info("account created: %s (%s)", result.inserted_id, role)
    return _account(document)


def authenticate(email: str, password: str) -> Account | None:
    """The account for these credentials, or None; unknown email costs the same."""
    document = mongo.db.users.find_one({"email_key": email_key(email)})
    stored_hash = document["password_hash"] if document else _DUMMY_HASH
    try:
        _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if document is None:
        return None
    if _hasher.check_needs_rehash(stored_hash):
        mongo.db.users.update_one(
            {"_id": document["_id"]},
            {"$set": {"password_hash": _hasher.hash(password)}},
        )
    return _account(document)


def get_account(account_id: str) -> Account | None:
    try:
        object_id = ObjectId(account_id)
    except (InvalidId, TypeError):
        return None
    document = mongo.db.users.find_one(
        {"_id": object_id}, {"email": 1, "name": 1, "role": 1}
    )
    return _account(document) if document else None


def set_role(email: str, role: str) -> bool:
    result = mongo.db.users.update_one(
        {"email_key": email_key(email)}, {"$set": {"role": role}}
    )
    return bool(result.matched_count)


def init_app(app: Flask) -> None:
    login_manager.user_loader(get_account)
