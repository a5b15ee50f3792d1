"""Seeding the catalogue from its data file (``flask printz seed``)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from pymongo.database import Database

from plugins.catalog import cache
from plugins.catalog.models import CatalogueFile, Product

log = logging.getLogger(__name__)

DATA_FILE = Path(__file__).parent / "data" / "products.json"


class CatalogueFileError(ValueError):
    """The data file describes a product that cannot be sold as written."""


def load_catalogue(path: Path = DATA_FILE) -> list[dict]:
    """The products of a data file, checked, each carrying the shop's currency."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    try:
        shop = CatalogueFile.model_validate(raw)
        products = [
            Product.model_validate({**entry, "currency": shop.currency})
            for entry in shop.products
        ]
    except ValidationError as error:
        raise CatalogueFileError(f"{path}: {error}") from error

    slugs = [product.slug for product in products]
    if len(set(slugs)) != len(slugs):
        raise CatalogueFileError(f"{path}: a slug is used twice")
    return [product.model_dump() for product in products]


def upsert_products(db: Database, products: list[dict]) -> int:
    """Write products by slug (again and again, safely), then retire the cache."""
    now = datetime.now(UTC)
    for product in products:
        db.products.update_one(
            {"slug": product["slug"]},
            {
                "$set": {**product, "updated_at": now},
                "$setOnInsert": {"created_at": now},
            },
            upsert=True,
        )
    cache.invalidate()
    log.info("catalogue seeded: %d products", len(products))
    return len(products)


def seed_catalogue(db: Database) -> int:
    return upsert_products(db, load_catalogue())
