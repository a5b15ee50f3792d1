"""Orders: placing once per key, the status machine, and who may see what."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from plugins.catalog.seed import load_catalogue, upsert_products
from plugins.orders import service
from printz.extensions import mongo

pytestmark = pytest.mark.usefixtures("catalog")

SESSION_COOKIE = "printz_session"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "Friedrichstraße 12",
    "city": "Berlin",
    "postal_code": "10117",
    "country": "DE",
}
FLYERS = {"product": "flyers", "options": {"size": "a5"}, "quantity": 500}


def order_body(*items, **extra) -> dict:
    return {"items": list(items or [FLYERS]), "shipping_address": ADDRESS, **extra}


def place(client, body=None, key=None):
    return client.post(
        "/api/orders",
        json=body or order_body(),
        headers={"Idempotency-Key": key or str(uuid.uuid4())},
    )


def placed(client, body=None) -> dict:
    response = place(client, body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def move(staff, order, status):
    return staff.post(f"/api/orders/{order['id']}/status", json={"status": status})


def moved_to(staff, order, *statuses) -> dict:
    for status in statuses:
        response = move(staff, order, status)
        assert response.status_code == 200, response.get_json()
    return response.get_json()


def same_session(app, signed_in):
    """Another browser tab: a new client carrying the same session cookie."""
    tab = app.test_client()
    tab.set_cookie(SESSION_COOKIE, signed_in.get_cookie(SESSION_COOKIE).value)
    return tab


# -- placing -------------------------------------------------------------------


def test_a_new_order_waits_for_payment_with_its_first_history_entry(customer):
    response = place(customer)

    assert response.status_code == 201
    order = response.get_json()
    assert response.headers["Location"] == f"/api/orders/{order['id']}"
    assert "Idempotent-Replayed" not in response.headers
    assert order["status"] == "pending_payment"
    assert order["customer_id"] == customer.user["id"]
    assert order["shipping_address"]["city"] == "Berlin"
    (entry,) = order["status_history"]
    assert entry["status"] == "pending_payment"
    assert entry["actor"] == {"id": customer.user["id"], "role": "customer"}
    assert entry["at"] == order["created_at"]


def test_the_order_is_priced_by_the_server_like_a_quote(customer):
    quoted = customer.post("/api/quotes", json={"items": [FLYERS]}).get_json()
    cheeky = {**FLYERS, "unit_price_cents": 1, "line_total_cents": 500}

    order = placed(customer, order_body(cheeky, total_cents=500))

    assert order["total_cents"] == quoted["total_cents"] == 500 * (9 + 2)
    assert order["items"][0]["unit_price_cents"] == 11
    assert order["currency"] == "EUR"


def test_an_order_needs_a_signed_in_customer(client):
    response = client.post("/api/orders", json={}, headers={"Idempotency-Key": "k-1"})

    assert response.status_code == 401


def test_an_order_without_an_idempotency_key_is_a_428(customer):
    response = customer.post("/api/orders", json=order_body())

    assert response.status_code == 428
    assert response.get_json()["error"]["code"] == "idempotency_key_required"


@pytest.mark.parametrize("key", ["has space", "x" * 256, "ключ", "a\tb", "{$ne:1}"])
def test_an_odd_idempotency_key_is_a_422(customer, key):
    response = customer.post(
        "/api/orders", json=order_body(), headers={"Idempotency-Key": key}
    )

    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["error"]["fields"]


def test_a_retry_with_the_same_key_and_body_replays_the_first_answer(customer):
    first = place(customer, key="order-2024-0001")

    retry = place(customer, key="order-2024-0001")

    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json() == first.get_json()
    assert len(customer.get("/api/orders").get_json()["items"]) == 1


def test_a_replay_answers_as_first_answered_even_after_the_order_moved(customer, staff):
    first = place(customer, key="order-moved-later")
    moved_to(staff, first.get_json(), "paid")

    retry = place(customer, key="order-moved-later")

    assert retry.get_json() == first.get_json()
    assert retry.get_json()["status"] == "pending_payment"


def test_a_retry_may_send_its_fields_in_another_order(customer):
    body = order_body()
    reordered = {key: body[key] for key in reversed(list(body))}
    first = place(customer, body, key="same-meaning")

    retry = place(customer, reordered, key="same-meaning")

    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json()["id"] == first.get_json()["id"]


def test_the_same_key_with_another_body_is_a_422(customer):
    place(customer, key="order-2024-0002")

    other = place(customer, order_body({**FLYERS, "quantity": 1000}), "order-2024-0002")

    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    assert len(customer.get("/api/orders").get_json()["items"]) == 1


def test_two_customers_may_use_the_same_key(customer, other_customer):
    mine = place(customer, key="shared-key")
    theirs = place(other_customer, key="shared-key")

    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.get_json()["id"] != mine.get_json()["id"]


def test_twelve_concurrent_retries_place_exactly_one_order(app, customer):
    tabs = [same_session(app, customer) for _ in range(12)]
    start = threading.Barrier(len(tabs))

    def retry(tab):
        start.wait()
        return place(tab, key="twelve-at-once")

    with ThreadPoolExecutor(max_workers=len(tabs)) as pool:
        answers = list(pool.map(retry, tabs))

    assert [answer.status_code for answer in answers] == [201] * 12
    assert len({answer.get_json()["id"] for answer in answers}) == 1
    replayed = [a.headers.get("Idempotent-Replayed") for a in answers]
    assert replayed.count("true") == 11
    with app.app_context():
        assert mongo.db.orders.count_documents({}) == 1


def test_a_refused_order_does_not_use_up_its_key(customer):
    refused = place(customer, order_body({**FLYERS, "quantity": 0}), "fix-and-retry")

    fixed = place(customer, order_body(), "fix-and-retry")

    assert refused.status_code == 422
    assert fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed.headers


# -- the shipping address ------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "line1", "city", "postal_code", "country"])
def test_each_required_address_field_is_named_when_missing(customer, field):
    address = {k: v for k, v in ADDRESS.items() if k != field}

    response = place(customer, {"items": [FLYERS], "shipping_address": address})

    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [f"shipping_address.{field}"]


@pytest.mark.parametrize("country", ["Germany", "D", "DEU", "12", "US", "ZZ", ""])
def test_a_country_must_be_a_code_we_ship_to(customer, country):
    address = {**ADDRESS, "country": country}

    response = place(customer, {"items": [FLYERS], "shipping_address": address})

    assert response.status_code == 422
    assert "shipping_address.country" in response.get_json()["error"]["fields"]


def test_a_lower_case_country_code_is_taken_in_capitals(customer):
    address = {**ADDRESS, "country": "nl", "line2": "3rd floor"}

    order = placed(customer, {"items": [FLYERS], "shipping_address": address})

    assert order["shipping_address"]["country"] == "NL"
    assert order["shipping_address"]["line2"] == "3rd floor"


def test_an_order_without_a_shipping_address_is_a_422(customer):
    response = place(customer, {"items": [FLYERS]})

    assert response.status_code == 422
    assert "shipping_address" in response.get_json()["error"]["fields"]


# -- operator objects ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"items": [FLYERS], "shipping_address": {**ADDRESS, key: {"$ne": None}}},
            f"shipping_address.{key}",
        )
        for key in ("name", "line1", "line2", "city", "postal_code", "country")
    ]
    + [
        (order_body({**FLYERS, "product": {"$gt": ""}}), "items.0.product"),
        (order_body({**FLYERS, "quantity": {"$gt": 0}}), "items.0.quantity"),
        (
            order_body({**FLYERS, "options": {"size": {"$ne": None}}}),
            "items.0.options.size",
        ),
        (
            {"quote_id": {"$ne": None}, "shipping_address": ADDRESS},
            "quote_id",
        ),
        ({"items": {"$ne": None}, "shipping_address": ADDRESS}, "items"),
    ],
)
def test_operator_objects_in_an_order_are_refused(app, customer, body, field):
    response = place(customer, body)

    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]
    with app.app_context():
        assert mongo.db.orders.count_documents({}) == 0


# -- from a quote --------------------------------------------------------------


def quote_for(client) -> dict:
    response = client.post("/api/quotes", json={"items": [FLYERS]})
    assert response.status_code == 201
    return response.get_json()


def order_from(quote) -> dict:
    return {"quote_id": quote["id"], "shipping_address": ADDRESS}


def test_an_order_from_a_quote_keeps_the_quoted_prices(app, customer):
    quoted = quote_for(customer)
    flyers = next(p for p in load_catalogue() if p["slug"] == "flyers")
    dearer = [
        {**tier, "unit_price_cents": tier["unit_price_cents"] * 3}
        for tier in flyers["price_tiers"]
    ]
    with app.app_context():
        upsert_products(mongo.db, [{**flyers, "price_tiers": dearer}])

    order = placed(customer, order_from(quoted))

    assert order["quote_id"] == quoted["id"]
    assert order["total_cents"] == quoted["total_cents"]
    assert (
        order["items"][0]["unit_price_cents"] == quoted["items"][0]["unit_price_cents"]
    )


def test_a_visitors_quote_can_be_ordered_once_signed_in(client, customer):
    quoted = quote_for(client)

    order = placed(customer, order_from(quoted))

    assert order["total_cents"] == quoted["total_cents"]


def test_another_customers_quote_cannot_be_ordered(customer, other_customer):
    quoted = quote_for(other_customer)

    response = place(customer, order_from(quoted))

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "quote_not_found"


@pytest.mark.parametrize("quote_id", ["nope", "0" * 24, ""])
def test_an_unknown_quote_is_a_422(customer, quote_id):
    response = place(customer, {"quote_id": quote_id, "shipping_address": ADDRESS})

    assert response.status_code == 422
    assert "quote_id" in response.get_json()["error"]["fields"]


def test_an_expired_quote_is_a_422(app, customer):
    quoted = quote_for(customer)
    with app.app_context():
        mongo.db.quotes.update_one(
            {"_id": ObjectId(quoted["id"])},
            {"$set": {"expires_at": datetime.now(UTC) - timedelta(minutes=1)}},
        )

    response = place(customer, order_from(quoted))

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "quote_expired"


@pytest.mark.parametrize(
    "body",
    [
        {"shipping_address": ADDRESS},
        {"items": [FLYERS], "quote_id": "0" * 24, "shipping_address": ADDRESS},
    ],
)
def test_an_order_needs_items_or_a_quote_but_not_both(customer, body):
    response = place(customer, body)

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "items_or_quote_required"


# -- cancelling ----------------------------------------------------------------


def test_a_customer_cancels_an_order_waiting_for_payment(customer):
    order = placed(customer)

    response = customer.post(f"/api/orders/{order['id']}/cancel")

    assert response.status_code == 200
    cancelled = response.get_json()
    assert cancelled["status"] == "cancelled"
    assert [entry["status"] for entry in cancelled["status_history"]] == [
        "pending_payment",
        "cancelled",
    ]
    assert cancelled["status_history"][-1]["actor"] == {
        "id": customer.user["id"],
        "role": "customer",
    }


def test_a_customer_cancels_a_paid_order(customer, staff):
    order = moved_to(staff, placed(customer), "paid")

    response = customer.post(f"/api/orders/{order['id']}/cancel")

    assert response.status_code == 200
    assert response.get_json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("statuses", "reason"),
    [
        (("paid", "in_production"), "being printed"),
        (("paid", "in_production", "shipped"), "already shipped"),
        (("paid", "in_production", "shipped", "delivered"), "delivered"),
    ],
)
def test_cancelling_once_production_started_is_a_409_with_the_reason(
    customer, staff, statuses, reason
):
    order = moved_to(staff, placed(customer), *statuses)

    response = customer.post(f"/api/orders/{order['id']}/cancel")

    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "order_not_cancellable"
    assert reason in error["message"]
    assert error["status"] == statuses[-1]


def test_cancelling_twice_is_a_409(customer):
    order = placed(customer)
    customer.post(f"/api/orders/{order['id']}/cancel")

    again = customer.post(f"/api/orders/{order['id']}/cancel")

    assert again.status_code == 409
    assert again.get_json()["error"]["message"] == "The order is already cancelled."


# -- staff moving orders -------------------------------------------------------


def test_staff_move_an_order_through_every_status_in_turn(customer, staff):
    order = placed(customer)

    done = moved_to(staff, order, "paid", "in_production", "shipped", "delivered")

    assert done["status"] == "delivered"
    history = done["status_history"]
    assert [entry["status"] for entry in history] == [
        "pending_payment",
        "paid",
        "in_production",
        "shipped",
        "delivered",
    ]
    assert all(
        entry["actor"] == {"id": staff.user["id"], "role": "staff"}
        for entry in history[1:]
    )
    assert [entry["at"] for entry in history] == sorted(e["at"] for e in history)


def test_the_customer_sees_the_moves_staff_made(customer, staff):
    order = moved_to(staff, placed(customer), "paid", "in_production")

    seen = customer.get(f"/api/orders/{order['id']}").get_json()

    assert seen["status"] == "in_production"
    assert len(seen["status_history"]) == 3


def test_staff_may_give_a_reason_that_is_kept_in_the_history(customer, staff):
    order = placed(customer)

    response = staff.post(
        f"/api/orders/{order['id']}/status",
        json={"status": "cancelled", "reason": "artwork never arrived"},
    )

    assert response.get_json()["status_history"][-1]["reason"] == (
        "artwork never arrived"
    )


@pytest.mark.parametrize(
    ("statuses", "target"),
    [
        ((), "shipped"),
        ((), "pending_payment"),
        (("paid",), "paid"),
        (("paid", "in_production"), "cancelled"),
        (("paid", "in_production"), "paid"),
        (("paid", "in_production", "shipped", "delivered"), "shipped"),
        (("cancelled",), "paid"),
    ],
)
def test_a_move_the_machine_does_not_allow_is_a_409(customer, staff, statuses, target):
    order = (
        moved_to(staff, placed(customer), *statuses) if statuses else placed(customer)
    )

    response = move(staff, order, target)

    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "illegal_status_change"
    assert error["status"] == (statuses[-1] if statuses else "pending_payment")


def test_an_unknown_status_is_a_422(customer, staff):
    order = placed(customer)

    response = move(staff, order, "printed")

    assert response.status_code == 422
    assert "status" in response.get_json()["error"]["fields"]


@pytest.mark.parametrize(
    "body", [{"status": {"$ne": None}}, {"status": "paid", "reason": {"$gt": ""}}]
)
def test_an_operator_object_in_a_status_change_is_a_422(customer, staff, body):
    order = placed(customer)

    response = staff.post(f"/api/orders/{order['id']}/status", json=body)

    assert response.status_code == 422
    assert staff.get(f"/api/orders/{order['id']}").get_json()["status"] == (
        "pending_payment"
    )


def test_of_concurrent_moves_only_one_wins(app, customer, staff):
    order = placed(customer)
    desks = [same_session(app, staff) for _ in range(8)]
    start = threading.Barrier(len(desks))

    def mark_paid(desk):
        start.wait()
        return move(desk, order, "paid").status_code

    with ThreadPoolExecutor(max_workers=len(desks)) as pool:
        statuses = sorted(pool.map(mark_paid, desks))

    assert statuses == [200] + [409] * 7
    final = staff.get(f"/api/orders/{order['id']}").get_json()
    assert [entry["status"] for entry in final["status_history"]] == [
        "pending_payment",
        "paid",
    ]


def test_a_customer_cannot_move_even_their_own_order(customer):
    order = placed(customer)

    response = move(customer, order, "paid")

    assert response.status_code == 403
    assert customer.get(f"/api/orders/{order['id']}").get_json()["status"] == (
        "pending_payment"
    )


# -- who may see what ----------------------------------------------------------


def test_another_customers_order_is_a_404(customer, other_customer):
    order = placed(customer)

    response = other_customer.get(f"/api/orders/{order['id']}")

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "order_not_found"


def test_another_customer_cannot_cancel_an_order(customer, other_customer):
    order = placed(customer)

    response = other_customer.post(f"/api/orders/{order['id']}/cancel")

    assert response.status_code == 404
    assert customer.get(f"/api/orders/{order['id']}").get_json()["status"] == (
        "pending_payment"
    )


def test_another_customer_cannot_move_an_order(customer, other_customer):
    order = placed(customer)

    response = move(other_customer, order, "paid")

    assert response.status_code == 403


@pytest.mark.parametrize(
    "order_id", ["nope", "0" * 24, "6" * 25, "%7B%22$ne%22:null%7D", "ZZ" * 12]
)
def test_a_malformed_or_missing_order_id_gets_the_same_404(customer, order_id):
    someone_elses = customer.get(f"/api/orders/{'0' * 24}").get_json()["error"]

    response = customer.get(f"/api/orders/{order_id}")

    assert response.status_code == 404
    error = response.get_json()["error"]
    assert (error["code"], error["message"]) == (
        someone_elses["code"],
        someone_elses["message"],
    )


@pytest.mark.parametrize("action", ["cancel", "status"])
def test_a_malformed_order_id_is_a_404_for_every_action(staff, action):
    response = staff.post(f"/api/orders/not-an-id/{action}", json={"status": "paid"})

    assert response.status_code == 404


def test_staff_may_read_any_customers_order(customer, staff):
    order = placed(customer)

    response = staff.get(f"/api/orders/{order['id']}")

    assert response.status_code == 200
    assert response.get_json()["customer_id"] == customer.user["id"]


def test_orders_need_sign_in_to_read(client):
    assert client.get("/api/orders").status_code == 401
    assert client.get(f"/api/orders/{'0' * 24}").status_code == 401


# -- listing -------------------------------------------------------------------


def every_page(client, **params) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/orders", query_string=query)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_the_list_shows_only_the_callers_orders_newest_first(customer, other_customer):
    mine = [placed(customer)["id"] for _ in range(3)]
    placed(other_customer)

    listed = customer.get("/api/orders").get_json()

    assert [order["id"] for order in listed["items"]] == mine[::-1]
    assert listed["next_cursor"] is None


def test_pages_filtered_by_status_show_each_order_once(customer):
    orders = [placed(customer) for _ in range(7)]
    for order in orders[1::3]:
        customer.post(f"/api/orders/{order['id']}/cancel")
    waiting = [o["id"] for o in orders if o not in orders[1::3]][::-1]

    pages = every_page(customer, status="pending_payment", limit=2)

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [order["id"] for page in pages for order in page] == waiting
    assert all(order["status"] == "pending_payment" for page in pages for order in page)


def test_pages_of_orders_placed_in_the_same_millisecond_stay_distinct(app, customer):
    first = placed(customer)
    with app.app_context():
        twin = mongo.db.orders.find_one({"_id": ObjectId(first["id"])})
        for _ in range(4):
            twin.pop("_id")
            twin["idempotency"]["key"] = str(uuid.uuid4())
            mongo.db.orders.insert_one(twin)

    pages = every_page(customer, limit=2)

    ids = [order["id"] for page in pages for order in page]
    assert len(ids) == len(set(ids)) == 5


@pytest.mark.parametrize(
    "query",
    ["status=printed", "status[$ne]=paid", "limit=0", "limit=101", "cursor=%%%%"],
)
def test_a_bad_list_query_is_a_422(customer, query):
    response = customer.get(f"/api/orders?{query}")

    assert response.status_code == 422


def test_a_forged_cursor_is_a_422_not_a_500(customer):
    import base64

    forged = base64.urlsafe_b64encode(
        b'{"created_ms": 99999999999999999, "id": "nope"}'
    ).decode()

    response = customer.get("/api/orders", query_string={"cursor": forged})

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_cursor"


def test_staff_may_list_every_customers_orders(customer, other_customer, staff):
    placed(customer)
    placed(other_customer)

    listed = staff.get("/api/orders", query_string={"scope": "all"}).get_json()

    customers = {order["customer_id"] for order in listed["items"]}
    assert customers == {customer.user["id"], other_customer.user["id"]}


def test_a_customer_cannot_list_every_customers_orders(customer):
    response = customer.get("/api/orders", query_string={"scope": "all"})

    assert response.status_code == 403


# -- get_order_for_user, as the chat assistant calls it ------------------------


def test_get_order_for_user_finds_only_the_users_own_order(
    app, customer, other_customer
):
    order = placed(customer)

    with app.test_request_context():
        own = service.get_order_for_user(order["id"], customer.user["id"])
        theirs = service.get_order_for_user(order["id"], other_customer.user["id"])
        malformed = service.get_order_for_user("not-an-id", customer.user["id"])
        operator = service.get_order_for_user({"$ne": None}, customer.user["id"])

    assert own == order
    assert theirs is malformed is operator is None


# -- the API document ----------------------------------------------------------


def test_the_openapi_document_describes_every_shop_route_and_model(client):
    document = client.get("/api/openapi.json").get_json()

    paths = document["paths"]
    assert {"get"} <= set(paths["/api/products"])
    assert {"get"} <= set(paths["/api/products/{slug}"])
    assert {"post"} <= set(paths["/api/quotes"])
    assert {"get", "post"} <= set(paths["/api/orders"])
    assert {"get"} <= set(paths["/api/orders/{order_id}"])
    assert {"post"} <= set(paths["/api/orders/{order_id}/cancel"])
    assert {"post"} <= set(paths["/api/orders/{order_id}/status"])
    header = paths["/api/orders"]["post"]["parameters"][0]
    assert (header["in"], header["name"]) == ("header", "Idempotency-Key")
    placed = paths["/api/orders"]["post"]
    assert placed["security"] == [{"session": []}]
    assert placed["responses"]["201"]["headers"]["Location"]["required"] is True
    assert "examples" in placed["requestBody"]["content"]["application/json"]
    schemas = document["components"]["schemas"]
    for model in ("Product", "ProductPage", "QuoteBody", "Quote", "OrderBody"):
        assert model in schemas
    for model in ("Order", "OrderPage", "ShippingAddress", "StatusChangeBody"):
        assert model in schemas
