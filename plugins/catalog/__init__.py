"""The catalogue: products, search, and priced quotes."""

from plugins.catalog import service, views
from plugins.catalog.seed import seed_catalogue
from printz.plugins import Plugin

plugin = Plugin(
    name="catalog",
    blueprint=views.bp,
    url_prefix="/api",
    create_indexes=service.create_indexes,
    seed=seed_catalogue,
)
