"""Accounts: sign up, sign in and out, limits and cross-site protection."""

from __future__ import annotations

from tests.conftest import PASSWORD, new_email, register

SESSION_COOKIE = "printz_session"


def session_id(client) -> str | None:
    cookie = client.get_cookie(SESSION_COOKIE)
    return cookie.value if cookie else None


def test_register_signs_the_customer_in(client):
    user = register(client, name="Ada Lovelace")

    me = client.get("/api/auth/me")

    assert me.status_code == 200
    assert me.get_json() == user
    assert set(user) == {"id", "email", "name", "role"}
    assert user["role"] == "customer"


def test_email_is_unique_whatever_its_case(client, app):
    email = new_email()
    register(client, email=email)

    again = app.test_client().post(
        "/api/auth/register",
        json={"email": email.upper(), "password": PASSWORD, "name": "Copy"},
    )

    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "email_taken"


def test_short_password_is_refused_naming_the_field(client):
    response = client.post(
        "/api/auth/register",
        json={"email": new_email(), "password": "short", "name": "Ada"},
    )

    assert response.status_code == 422
    assert "password" in response.get_json()["error"]["fields"]


def test_operator_object_in_login_is_a_422_naming_the_field(client):
    register(client)

    response = client.post(
        "/api/auth/login", json={"email": {"$ne": None}, "password": {"$gt": ""}}
    )

    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"email", "password"}


def test_password_is_stored_as_an_argon2id_hash(client, app):
    from printz.extensions import mongo

    email = new_email()
    register(client, email=email)

    with app.app_context():
        stored = mongo.db.users.find_one({"email_key": email})

    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in str(stored)


def test_wrong_password_and_unknown_email_get_the_same_answer(client, app):
    email = new_email()
    register(client, email=email)
    anonymous = app.test_client()

    wrong = anonymous.post(
        "/api/auth/login", json={"email": email, "password": "not the password"}
    )
    unknown = anonymous.post(
        "/api/auth/login", json={"email": new_email(), "password": PASSWORD}
    )

    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.get_json()["error"]["message"] == unknown.get_json()["error"]["message"]
    )
    assert wrong.get_json()["error"]["code"] == unknown.get_json()["error"]["code"]


def test_login_issues_a_new_session_id(app):
    email = new_email()
    register(app.test_client(), email=email)
    browser = app.test_client()
    browser.get("/api/auth/me")
    browser.set_cookie(SESSION_COOKIE, "planted-session-id-from-an-attacker")

    response = browser.post(
        "/api/auth/login", json={"email": email, "password": PASSWORD}
    )

    assert response.status_code == 200
    assert session_id(browser) not in (None, "planted-session-id-from-an-attacker")
    assert browser.get("/api/auth/me").status_code == 200


def test_each_login_gets_its_own_session_id(app):
    email = new_email()
    register(app.test_client(), email=email)
    browser = app.test_client()

    browser.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    first = session_id(browser)
    browser.post("/api/auth/login", json={"email": email, "password": PASSWORD})

    assert session_id(browser) != first


def test_logout_destroys_the_session_on_the_server(customer, app):
    stolen = session_id(customer)

    response = customer.post("/api/auth/logout")

    assert response.status_code == 200
    thief = app.test_client()
    thief.set_cookie(SESSION_COOKIE, stolen)
    assert thief.get("/api/auth/me").status_code == 401
    assert customer.get("/api/auth/me").status_code == 401


def test_me_is_401_when_anonymous(client):
    response = client.get("/api/auth/me")

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_login_is_limited_per_account(app):
    email = new_email()
    register(app.test_client(), email=email)
    attempts = [
        # Different client addresses: only the per-account limit can apply.
        app.test_client().post(
            "/api/auth/login",
            json={"email": email.upper(), "password": "wrong password!"},
            environ_base={"REMOTE_ADDR": f"10.0.0.{n}"},
        )
        for n in range(6)
    ]

    assert [a.status_code for a in attempts[:5]] == [401] * 5
    assert attempts[5].status_code == 429
    assert attempts[5].get_json()["error"]["code"] == "rate_limited"
    assert int(attempts[5].headers["Retry-After"]) > 0


def test_login_is_limited_per_client_address(app):
    browser = app.test_client()
    statuses = [
        browser.post(
            "/api/auth/login",
            json={"email": new_email(), "password": "wrong password!"},
        ).status_code
        for _ in range(21)
    ]

    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429


def test_cross_site_request_cannot_act_for_a_customer(customer):
    response = customer.post(
        "/api/auth/logout", headers={"Origin": "https://evil.example"}
    )

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "bad_origin"
    assert customer.get("/api/auth/me").status_code == 200


def test_same_origin_request_is_allowed(customer):
    response = customer.post("/api/auth/logout", headers={"Origin": "http://localhost"})

    assert response.status_code == 200


def test_form_posts_are_refused(client):
    response = client.post(
        "/api/auth/login",
        data={"email": "a@example.com", "password": PASSWORD},
    )

    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"


def test_session_cookie_is_httponly_and_lax(client):
    response = client.post(
        "/api/auth/register",
        json={"email": new_email(), "password": PASSWORD, "name": "Ada"},
    )

    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
