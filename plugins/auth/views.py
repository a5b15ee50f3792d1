"""Routes under /api/auth."""

from __future__ import annotations

import logging

import click
from flask import current_app, request, session
from flask.cli import with_appcontext
from flask_login import current_user, login_required, login_user, logout_user
from flask_openapi3 import APIBlueprint, Tag

from plugins.auth import service
from plugins.auth.models import LoggedOut, LoginBody, RegisterBody, UserOut
from printz.errors import Unauthorized
from printz.extensions import limiter
from printz.observability.context import clear_sentry_user, set_sentry_user
from printz.schemas import COMMON_ERRORS, SIGNED_IN, ErrorResponse

log = logging.getLogger(__name__)

bp = APIBlueprint(
    "auth", __name__, abp_tags=[Tag(name="auth")], abp_responses=COMMON_ERRORS
)

BAD_CREDENTIALS = "The email or password is not right."


def _account_rate_key() -> str:
    """Login attempts are counted per email, whatever the case or spacing."""
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    if isinstance(email, str) and email.strip():
        return "account:" + service.email_key(email)[:254]
    return "account:none"


def _start_session(account: service.Account) -> None:
    """Sign in with a fresh session id, so an id planted before login is useless."""
    login_user(account)
    session.permanent = True
    current_app.session_interface.regenerate(session)
    set_sentry_user(account)


@bp.post("/register", responses={201: UserOut, 409: ErrorResponse})
def register(body: RegisterBody):
    """Create a customer account and sign it in."""
    account = service.create_account(str(body.email), body.password, body.name)
    _start_session(account)
    return account.public(), 201


@bp.post("/login", responses={200: UserOut, 401: ErrorResponse})
@limiter.limit(
    lambda: current_app.config["PRINTZ_LOGIN_LIMIT_ADDRESS"], scope="login-address"
)
@limiter.limit(
    lambda: current_app.config["PRINTZ_LOGIN_LIMIT_ACCOUNT"],
    key_func=_account_rate_key,
    scope="login-account",
)
def login(body: LoginBody):
    """Sign in; a wrong password and an unknown email get the same answer."""
    account = service.authenticate(body.email, body.password)
    if account is None:
        log.info("sign-in refused")
        raise Unauthorized(BAD_CREDENTIALS, code="bad_credentials")
    _start_session(account)
    return account.public()


@bp.post("/logout", responses={200: LoggedOut})
def logout():
    """End the session; it is deleted from the server, not just forgotten."""
    logout_user()
    session.clear()
    clear_sentry_user()
    return {"status": "signed_out"}


@bp.get("/me", responses={200: UserOut, 401: ErrorResponse}, security=SIGNED_IN)
@login_required
def me():
    """The signed-in account."""
    return current_user.public()


@click.command("create-staff")
@click.argument("email")
@click.option("--name", default="Printz staff", show_default=True)
@with_appcontext
def create_staff_command(email: str, name: str) -> None:
    """Make EMAIL a staff account, creating it (asking a password) if needed."""
    if service.set_role(email, "staff"):
        click.echo(f"{email} is now staff")
        return
    password = click.prompt(
        "Password for the new staff account", hide_input=True, confirmation_prompt=True
    )
    if len(password) < 10:
        raise click.ClickException("the password needs at least 10 characters")
    service.create_account(email, password, name, role="staff")
    click.echo(f"staff account created: {email}")
