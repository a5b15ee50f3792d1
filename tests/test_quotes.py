"""Quotes: tier pricing, surcharges, validation against the product, storage."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from plugins.catalog import service
from plugins.catalog.seed import upsert_products
from printz.errors import ValidationFailed
from printz.extensions import mongo

# A product with round numbers, so each expected price can be read at a glance.
TEST_BANNER = {
    "slug": "test-banners",
    "name": "Test banners",
    "category": "banners",
    "description": "Banners priced for the tests.",
    "currency": "EUR",
    "options": {
        "size": [
            {"value": "small", "label": "Small", "surcharge_cents": 0},
            {"value": "large", "label": "Large", "surcharge_cents": 500},
        ],
        "eyelets": [
            {"value": "none", "label": "No eyelets", "surcharge_cents": 0},
            {
                "value": "corners",
                "label": "Eyelets in the corners",
                "surcharge_cents": 50,
            },
        ],
    },
    "price_tiers": [
        {"min_quantity": 10, "unit_price_cents": 2000},
        {"min_quantity": 50, "unit_price_cents": 1500},
        {"min_quantity": 100, "unit_price_cents": 1200},
    ],
}


@pytest.fixture
def banner(app, catalog):
    with app.app_context():
        upsert_products(mongo.db, [TEST_BANNER])
    return TEST_BANNER


def quote(client, *items):
    return client.post("/api/quotes", json={"items": list(items)})


def banners(quantity, **options):
    return {"product": "test-banners", "options": options, "quantity": quantity}


# -- pricing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "tier", "unit_price"),
    [(10, 10, 2000), (49, 10, 2000), (50, 50, 1500), (99, 50, 1500), (100, 100, 1200)],
)
def test_a_quantity_gets_the_largest_tier_it_reaches(
    client, banner, quantity, tier, unit_price
):
    response = quote(client, banners(quantity))

    assert response.status_code == 201
    line = response.get_json()["items"][0]
    assert line["tier_min_quantity"] == tier
    assert line["unit_price_cents"] == unit_price
    assert line["line_total_cents"] == unit_price * quantity


def test_each_chosen_option_adds_its_surcharge_to_every_piece(client, banner):
    response = quote(client, banners(50, size="large", eyelets="corners"))

    line = response.get_json()["items"][0]
    assert line["tier_unit_price_cents"] == 1500
    assert line["surcharge_cents"] == 550
    assert line["unit_price_cents"] == 2050
    assert line["line_total_cents"] == 102_500


def test_a_group_left_out_takes_its_first_choice_and_the_line_says_so(client, banner):
    response = quote(client, banners(10, size="large"))

    line = response.get_json()["items"][0]
    assert line["options"] == {"size": "large", "eyelets": "none"}
    assert line["unit_price_cents"] == 2500


def test_the_total_adds_up_every_line_in_the_shops_currency(client, banner):
    response = quote(
        client,
        banners(10),
        banners(100, eyelets="corners"),
        {"product": "posters", "options": {"size": "a2"}, "quantity": 1},
    )

    body = response.get_json()
    assert [line["line_total_cents"] for line in body["items"]] == [
        20_000,
        125_000,
        1_150,
    ]
    assert body["total_cents"] == 146_150
    assert body["currency"] == "EUR"


def test_prices_sent_by_the_client_are_ignored(client, banner):
    item = {**banners(10), "unit_price_cents": 1, "line_total_cents": 10}

    response = client.post("/api/quotes", json={"items": [item], "total_cents": 10})

    assert response.get_json()["total_cents"] == 20_000


# -- what a quote is -----------------------------------------------------------


def test_a_quote_has_an_id_and_expires_in_seven_days(client, banner):
    body = quote(client, banners(10)).get_json()

    created = datetime.fromisoformat(body["created_at"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert body["id"]
    assert expires - created == timedelta(days=7)


def test_a_signed_in_customers_quote_is_stored_as_theirs(app, customer, banner):
    body = quote(customer, banners(10)).get_json()

    with app.app_context():
        stored = mongo.db.quotes.find_one({"total_cents": body["total_cents"]})
    assert str(stored["_id"]) == body["id"]
    assert stored["owner_id"] == customer.user["id"]


def test_a_visitor_can_ask_for_a_quote(app, client, banner):
    response = quote(client, banners(10))

    assert response.status_code == 201
    with app.app_context():
        assert mongo.db.quotes.find_one()["owner_id"] is None


# -- validation against the product --------------------------------------------


def test_an_unknown_option_group_is_a_422_naming_the_field(client, banner):
    response = quote(client, banners(10, paper="silk"))

    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert list(fields) == ["items.0.options.paper"]
    assert "size, eyelets" in fields["items.0.options.paper"]


def test_an_unknown_choice_is_a_422_naming_the_group(client, banner):
    response = quote(client, banners(10, size="huge"))

    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert list(fields) == ["items.0.options.size"]
    assert "small, large" in fields["items.0.options.size"]


def test_an_unknown_product_is_a_422_naming_the_line(client, banner):
    response = quote(client, banners(10), {"product": "mugs", "quantity": 10})

    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["items.1.product"]


def test_every_bad_line_is_reported_at_once(client, banner):
    response = quote(client, banners(10, size="huge"), banners(5, colour="red"))

    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {
        "items.0.options.size",
        "items.1.options.colour",
        "items.1.quantity",
    }


@pytest.mark.parametrize("quantity", [0, -5, 100_001, 2.5, "100", True, None])
def test_quantity_must_be_a_whole_number_from_1_to_100000(client, banner, quantity):
    response = quote(client, banners(quantity))

    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["items.0.quantity"]


def test_the_largest_quantity_is_accepted(client, banner):
    response = quote(client, banners(100_000))

    assert response.status_code == 201
    assert response.get_json()["total_cents"] == 120_000_000


def test_a_run_below_the_smallest_tier_is_a_422_saying_the_minimum(client, banner):
    response = quote(client, banners(9))

    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert "10 pieces" in fields["items.0.quantity"]


def test_an_empty_quote_is_a_422(client, banner):
    response = client.post("/api/quotes", json={"items": []})

    assert response.status_code == 422
    assert "items" in response.get_json()["error"]["fields"]


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"product": {"$ne": None}, "quantity": 10}, "items.0.product"),
        ({"product": {"$gt": ""}, "quantity": 10}, "items.0.product"),
        (banners({"$gt": 0}), "items.0.quantity"),
        (banners(10, size={"$ne": None}), "items.0.options.size"),
        (banners(10, **{"$where": "1"}), "items.0.options.$where"),
        ({**banners(10), "options": {"$ne": None}}, "items.0.options.$ne"),
        ({**banners(10), "options": ["size"]}, "items.0.options"),
    ],
)
def test_operator_objects_in_a_quote_are_refused(app, client, banner, item, field):
    response = quote(client, item)

    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]
    with app.app_context():
        assert mongo.db.quotes.count_documents({}) == 0


def test_an_operator_object_as_the_items_is_refused(client, banner):
    response = client.post("/api/quotes", json={"items": {"$ne": None}})

    assert response.status_code == 422
    assert "items" in response.get_json()["error"]["fields"]


# -- quote_price, as the chat assistant calls it -------------------------------


def test_quote_price_prices_and_stores_for_the_owner(app, banner):
    with app.test_request_context():
        body = service.quote_price([banners(50)], owner_id="owner-1")
        stored = mongo.db.quotes.find_one()

    assert body["total_cents"] == 75_000
    assert str(stored["_id"]) == body["id"]
    assert stored["owner_id"] == "owner-1"


def test_quote_price_without_storing_has_no_id(app, banner):
    with app.test_request_context():
        body = service.quote_price([banners(50)], store=False)
        stored = mongo.db.quotes.count_documents({})

    assert body["id"] is None
    assert body["total_cents"] == 75_000
    assert stored == 0


def test_quote_price_raises_validation_failed_naming_the_field(app, banner):
    with app.test_request_context(), pytest.raises(ValidationFailed) as error:
        service.quote_price([banners(10), banners(10, size="huge")])

    assert list(error.value.fields) == ["items.1.options.size"]


def test_quote_price_checks_the_shape_of_each_item(app, banner):
    with app.test_request_context(), pytest.raises(ValidationFailed) as error:
        service.quote_price([{"product": "test-banners", "quantity": "lots"}])

    assert list(error.value.fields) == ["items.0.quantity"]
