"""The orders plugin (its routes arrive with their own issue)."""

from flask_openapi3 import APIBlueprint, Tag

from printz.plugins import Plugin

bp = APIBlueprint("orders", __name__, abp_tags=[Tag(name="orders")])

plugin = Plugin(name="orders", blueprint=bp, url_prefix="/api")
