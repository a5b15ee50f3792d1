"""The catalogue: seeding, search, pagination, detail and its Redis cache."""

from __future__ import annotations

import base64

import pytest
import redis
import sentry_sdk

from plugins.catalog import service
from plugins.catalog.seed import load_catalogue, upsert_products
from printz import create_app
from printz.cli import seed_data
from printz.errors import ValidationFailed
from printz.extensions import mongo


def all_products(client, **params) -> list[dict]:
    """Every product, following the cursors page after page."""
    products, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/products", query_string=query)
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        products += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return products


def slugs(products: list[dict]) -> list[str]:
    return [product["slug"] for product in products]


def cache_keys(services, kind: str) -> list[bytes]:
    return redis.Redis.from_url(services.redis_url).keys(f"catalog:v*:{kind}:*")


# -- the seeded range ----------------------------------------------------------


def test_seeded_catalogue_spans_at_least_twelve_products_in_four_categories(
    client, catalog
):
    products = all_products(client, limit=100)

    assert catalog == {"catalog": len(products)}
    assert len(products) >= 12
    assert len({product["category"] for product in products}) >= 4


def test_every_product_has_options_with_surcharges_and_price_tiers(client, catalog):
    for product in all_products(client):
        assert product["currency"] == "EUR"
        assert product["options"], product["slug"]
        for choices in product["options"].values():
            assert all(choice["surcharge_cents"] >= 0 for choice in choices)
            assert all(choice["label"] and choice["value"] for choice in choices)
        assert len(product["price_tiers"]) >= 3, product["slug"]


def test_a_larger_run_is_cheaper_per_piece(client, catalog):
    for product in all_products(client):
        tiers = product["price_tiers"]
        quantities = [tier["min_quantity"] for tier in tiers]
        unit_prices = [tier["unit_price_cents"] for tier in tiers]
        assert quantities == sorted(set(quantities)), product["slug"]
        assert unit_prices == sorted(set(unit_prices), reverse=True), product["slug"]


def test_seeding_again_updates_in_place(app, client, catalog):
    before = all_products(client)

    with app.app_context():
        again = seed_data()
        stored = mongo.db.products.count_documents({})

    assert again == catalog == {"catalog": stored}
    assert all_products(client) == before


# -- detail --------------------------------------------------------------------


def test_product_detail_shows_options_and_price_tiers(client, catalog):
    response = client.get("/api/products/standard-business-cards")

    assert response.status_code == 200
    product = response.get_json()
    assert product["name"] == "Standard business cards"
    assert product["category"] == "business-cards"
    assert {"size", "paper", "finish", "sides"} <= set(product["options"])
    assert {
        "value": "double",
        "label": "Printed on both sides",
        "surcharge_cents": 1,
    } in (product["options"]["sides"])
    assert product["price_tiers"][0] == {"min_quantity": 100, "unit_price_cents": 18}


@pytest.mark.parametrize("slug", ["no-such-product", "$ne", ".*", "FLYERS", "a" * 90])
def test_unknown_product_is_404(client, catalog, slug):
    response = client.get(f"/api/products/{slug}")

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "product_not_found"


# -- search and filters --------------------------------------------------------


def test_search_ignores_case_in_name_and_description(client, catalog):
    found = all_products(client, q="CARDS")

    assert set(slugs(found)) == {
        "standard-business-cards",
        "luxe-business-cards",
        "postcards",
    }


def test_search_needs_every_word(client, catalog):
    found = all_products(client, q="foil edges")

    assert slugs(found) == ["luxe-business-cards"]


@pytest.mark.parametrize("text", [".*", "^", "(", "[a-z]+", "\\", "flyer|poster"])
def test_search_text_is_never_a_pattern(client, catalog, text):
    response = client.get("/api/products", query_string={"q": text})

    assert response.status_code == 200
    assert response.get_json() == {"items": [], "next_cursor": None}


def test_search_text_that_looks_like_an_operator_is_plain_text(client, catalog):
    response = client.get("/api/products", query_string={"q": '{"$ne": null}'})

    assert response.status_code == 200
    assert response.get_json()["items"] == []


@pytest.mark.parametrize(
    "query", ["q[$ne]=x", "category[$ne]=x", "q[$regex]=.*", "category[$gt]="]
)
def test_operator_shaped_query_parameters_are_refused(client, catalog, query):
    response = client.get(f"/api/products?{query}")

    assert response.status_code == 422
    assert response.get_json()["error"]["fields"]


def test_category_filter_shows_only_that_category(client, catalog):
    found = all_products(client, category="stickers")

    assert set(slugs(found)) == {"die-cut-stickers", "sticker-sheets", "roll-labels"}


def test_unknown_category_is_an_empty_list(client, catalog):
    response = client.get("/api/products", query_string={"category": "mugs"})

    assert response.get_json() == {"items": [], "next_cursor": None}


# -- pagination ----------------------------------------------------------------


def test_pages_show_each_product_once_in_a_stable_order(client, catalog):
    everything = client.get("/api/products", query_string={"limit": 100}).get_json()

    paged = all_products(client, limit=4)

    assert everything["next_cursor"] is None
    assert slugs(paged) == slugs(everything["items"])
    assert len(set(slugs(paged))) == len(paged)
    ordered = [(product["category"], product["slug"]) for product in paged]
    assert ordered == sorted(ordered)


def test_only_the_last_page_has_no_next_cursor(client, catalog):
    first = client.get("/api/products", query_string={"limit": 10}).get_json()
    last = client.get(
        "/api/products", query_string={"limit": 10, "cursor": first["next_cursor"]}
    ).get_json()

    assert len(first["items"]) == 10
    assert first["next_cursor"]
    assert 0 < len(last["items"]) <= 10
    assert last["next_cursor"] is None


def test_search_pages_through_its_own_results(client, catalog):
    found = all_products(client, q="printed", limit=2)

    assert len(found) > 2
    assert all(
        "printed" in (product["name"] + product["description"]).lower()
        for product in found
    )


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        base64.urlsafe_b64encode(b'{"slug": 1}').decode(),
        base64.urlsafe_b64encode(b'{"category": {"$gt": ""}, "slug": ""}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        "x" * 600,
        # A lone surrogate is valid JSON but no string MongoDB can store.
        base64.urlsafe_b64encode(b'{"category": "a", "slug": "\\ud800"}').decode(),
    ],
)
def test_a_cursor_this_list_did_not_give_out_is_a_422(client, catalog, cursor):
    response = client.get("/api/products", query_string={"cursor": cursor})

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert "cursor" in error["fields"]


@pytest.mark.parametrize("limit", ["0", "101", "ten", "-1"])
def test_limit_outside_one_to_a_hundred_is_a_422(client, catalog, limit):
    response = client.get("/api/products", query_string={"limit": limit})

    assert response.status_code == 422
    assert "limit" in response.get_json()["error"]["fields"]


# -- the cache -----------------------------------------------------------------


def test_second_read_is_served_from_redis(app, client, catalog, services):
    first = client.get("/api/products/flyers").get_json()
    with app.app_context():
        mongo.db.products.update_one(
            {"slug": "flyers"}, {"$set": {"name": "Changed behind the cache"}}
        )

    second = client.get("/api/products/flyers").get_json()

    assert cache_keys(services, "product")
    assert second == first


def test_listing_is_cached_under_the_catalog_prefix(client, catalog, services):
    client.get("/api/products", query_string={"q": "poster"})

    assert len(cache_keys(services, "products")) == 1


def test_a_catalogue_change_retires_the_cache(app, client, catalog):
    client.get("/api/products/flyers")
    client.get("/api/products", query_string={"category": "flyers"})
    flyers = next(p for p in load_catalogue() if p["slug"] == "flyers")

    with app.app_context():
        upsert_products(mongo.db, [{**flyers, "name": "Flyers, now recycled"}])

    assert client.get("/api/products/flyers").get_json()["name"] == (
        "Flyers, now recycled"
    )
    listed = all_products(client, category="flyers")
    assert "Flyers, now recycled" in [product["name"] for product in listed]


def test_cache_hits_and_misses_are_recorded_for_sentry(client, catalog, sentry_sink):
    client.get("/api/products/posters")
    client.get("/api/products/posters")
    sentry_sdk.flush(timeout=2)

    transactions = sentry_sink.wait_for(
        lambda sink: [
            t for t in sink.transactions() if "products" in t.get("transaction", "")
        ]
    )
    cache_gets = [
        span["data"]["cache.hit"]
        for transaction in transactions
        for span in transaction["spans"]
        if span.get("op") == "cache.get"
    ]
    assert cache_gets == [False, True]


@pytest.fixture
def app_without_redis(settings, catalog):
    """The same shop and database, with Redis on a port where nothing listens."""
    return create_app(
        {**settings, "REDIS_URL": "redis://127.0.0.1:9/0", "REDIS_TIMEOUT_S": 0.3}
    )


def test_catalogue_still_answers_when_redis_is_down(app_without_redis):
    client = app_without_redis.test_client()

    listing = client.get("/api/products", query_string={"q": "cards"})
    detail = client.get("/api/products/posters")

    assert listing.status_code == 200
    assert "standard-business-cards" in slugs(listing.get_json()["items"])
    assert detail.status_code == 200
    assert detail.get_json()["slug"] == "posters"


# -- the service functions other plugins call ----------------------------------


def test_search_products_returns_product_dicts(app, catalog):
    with app.test_request_context():
        found = service.search_products("sticker", category="stickers", limit=2)

    assert len(found) == 2
    assert all(product["category"] == "stickers" for product in found)
    assert {"slug", "name", "options", "price_tiers", "currency"} <= set(found[0])


def test_search_products_refuses_non_text(app, catalog):
    with app.test_request_context(), pytest.raises(ValidationFailed) as error:
        service.search_products({"$ne": None})

    assert error.value.fields == {"query": "must be text"}


def test_get_product_is_none_for_an_unknown_slug(app, catalog):
    with app.test_request_context():
        assert service.get_product("posters")["slug"] == "posters"
        assert service.get_product("nothing-here") is None
        assert service.get_product({"$ne": None}) is None
