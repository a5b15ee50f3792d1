"""The AI shopping assistant: a streamed chat that can search, quote and track."""

from plugins.chat import model, store, views
from printz.plugins import Plugin

plugin = Plugin(
    name="chat",
    blueprint=views.bp,
    url_prefix="/api",
    init_app=model.init_app,
    create_indexes=store.create_indexes,
    requires=("auth", "catalog", "orders"),
)
