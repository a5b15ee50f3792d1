"""Orders: placing them once, following them, moving them through production."""

from plugins.orders import service, views
from printz.plugins import Plugin

plugin = Plugin(
    name="orders",
    blueprint=views.bp,
    url_prefix="/api",
    create_indexes=service.create_indexes,
    requires=("auth", "catalog"),
)
