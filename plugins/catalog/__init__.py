"""The catalog plugin (its routes arrive with their own issue)."""

from flask_openapi3 import APIBlueprint, Tag

from printz.plugins import Plugin

bp = APIBlueprint("catalog", __name__, abp_tags=[Tag(name="catalog")])

plugin = Plugin(name="catalog", blueprint=bp, url_prefix="/api")
