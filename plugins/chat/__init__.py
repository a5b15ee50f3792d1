"""The chat plugin (its routes arrive with their own issue)."""

from flask_openapi3 import APIBlueprint, Tag

from printz.plugins import Plugin

bp = APIBlueprint("chat", __name__, abp_tags=[Tag(name="chat")])

plugin = Plugin(name="chat", blueprint=bp, url_prefix="/api")
