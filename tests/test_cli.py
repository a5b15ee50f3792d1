"""`flask printz ...` commands."""

from __future__ import annotations

from printz.extensions import mongo
from tests.conftest import PASSWORD, new_email


def test_init_db_creates_the_unique_email_index(app):
    result = app.test_cli_runner().invoke(args=["printz", "init-db"])

    assert result.exit_code == 0, result.output
    assert "indexes ready: auth" in result.output
    with app.app_context():
        indexes = mongo.db.users.index_information()
    assert indexes["email_key_unique"]["unique"] is True


def test_create_staff_promotes_an_existing_account(app, customer):
    result = app.test_cli_runner().invoke(
        args=["printz", "create-staff", customer.user["email"]]
    )

    assert result.exit_code == 0, result.output
    assert customer.get("/api/auth/me").get_json()["role"] == "staff"


def test_create_staff_creates_a_new_account_with_a_prompted_password(app):
    email = new_email("staff")

    result = app.test_cli_runner().invoke(
        args=["printz", "create-staff", email], input=f"{PASSWORD}\n{PASSWORD}\n"
    )

    assert result.exit_code == 0, result.output
    login = app.test_client().post(
        "/api/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert login.get_json()["role"] == "staff"


def test_shell_context_offers_app_db_and_redis(app):
    with app.app_context():
        context = app.make_shell_context()

    assert {"app", "db", "redis"} <= set(context)
    assert context["redis"].ping() is True
