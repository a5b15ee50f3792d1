"""Signed-in sessions for the schemathesis fuzzer (its SCHEMATHESIS_HOOKS module).

Without a session every customer route answers 401 and the fuzzer learns
nothing about it, so each generated request carries a real session cookie:

- a customer's, signed up once, and again whenever a request comes back 401
  (schemathesis then replays that request), so a session that ended cannot
  leave the rest of the run signed out;
- staff's for the staff-only status route, when tests.fuzz created a staff
  account and named it in the environment;
- a customer's of its own for every logout, signed up for that one request,
  since a logout ends the session it carries;
- none for sign-up and sign-in: a success there replaces the session the
  request carried, which would sign the shared customer out.
"""

from __future__ import annotations

import os
import uuid

import requests
import schemathesis

from tests.fuzz import STAFF_EMAIL_ENV, STAFF_PASSWORD_ENV

SESSION_COOKIE = "printz_session"
PASSWORD = "fuzzing customer password"
TIMEOUT_S = 10

STAFF_ONLY = "/api/orders/{order_id}/status"
LOGOUT = "/api/auth/logout"
SESSION_STARTING = ["/api/auth/register", "/api/auth/login"]


def _base_url(case) -> str:
    return case.operation.schema.get_base_url()


def _session_of(response: requests.Response, action: str) -> str:
    if response.status_code not in (200, 201):
        raise RuntimeError(
            f"{action} answered {response.status_code}: {response.text[:300]}"
        )
    session_id = response.cookies.get(SESSION_COOKIE)
    if not session_id:
        raise RuntimeError(f"{action} set no {SESSION_COOKIE} cookie")
    return session_id


def sign_up(base_url: str) -> str:
    """A new customer's session id."""
    email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
    response = requests.post(
        base_url + "/api/auth/register",
        json={"email": email, "password": PASSWORD, "name": "Fuzz customer"},
        timeout=TIMEOUT_S,
    )
    return _session_of(response, "sign-up")


def sign_in(base_url: str, email: str, password: str) -> str:
    response = requests.post(
        base_url + "/api/auth/login",
        json={"email": email, "password": password},
        timeout=TIMEOUT_S,
    )
    return _session_of(response, "staff sign-in")


def _carry(case, session_id: str) -> None:
    case.cookies = {**(case.cookies or {}), SESSION_COOKIE: session_id}


@schemathesis.auth().apply_to(method="POST", path=STAFF_ONLY)
class StaffSession:
    """Staff's session for the staff-only route; a customer's without staff."""

    def get(self, case, context) -> str:
        email = os.environ.get(STAFF_EMAIL_ENV)
        password = os.environ.get(STAFF_PASSWORD_ENV)
        if email and password:
            return sign_in(_base_url(case), email, password)
        return sign_up(_base_url(case))

    def set(self, case, session_id: str, context) -> None:
        _carry(case, session_id)


@schemathesis.auth(refresh_interval=None).apply_to(method="POST", path=LOGOUT)
class SessionToEnd:
    """A fresh customer per logout: the logout ends it, nobody else uses it."""

    def get(self, case, context) -> str:
        return sign_up(_base_url(case))

    def set(self, case, session_id: str, context) -> None:
        _carry(case, session_id)


@schemathesis.auth().skip_for(path=[STAFF_ONLY, LOGOUT, *SESSION_STARTING])
class CustomerSession:
    """One customer for every other route, signed up again after a 401."""

    def get(self, case, context) -> str:
        return sign_up(_base_url(case))

    def set(self, case, session_id: str, context) -> None:
        _carry(case, session_id)
