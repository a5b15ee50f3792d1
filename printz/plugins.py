"""Plugin discovery and registration.

A plugin is a distribution's entry point in the ``printz.plugins`` group that
resolves to a ``Plugin``. Only the plugins named in ``PRINTZ_PLUGINS`` load, in
that order; an unknown or broken one stops start-up with a message naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import click
from flask import Blueprint, Flask
from flask_openapi3 import APIBlueprint
from pymongo.database import Database

from printz.cli import printz_cli
from printz.config import ConfigError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "printz.plugins"


class PluginError(ConfigError):
    """A plugin named in PRINTZ_PLUGINS could not be loaded."""


@dataclass
class Plugin:
    """What a plugin package exposes as ``plugin``.

    ``commands`` join ``flask printz``; ``create_indexes`` runs in
    ``flask printz init-db`` and ``seed`` in ``flask printz seed``, never at
    start-up, where every gunicorn worker would repeat them.
    """

    name: str
    blueprint: Blueprint
    url_prefix: str
    init_app: Callable[[Flask], None] | None = None
    cli: click.Group | None = None
    commands: tuple[click.Command, ...] = ()
    create_indexes: Callable[[Database], None] | None = None
    seed: Callable[[Database], int] | None = None
    requires: tuple[str, ...] = field(default_factory=tuple)


def available_plugins() -> dict[str, object]:
    """Entry points of the group, by name; nothing is imported yet."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin(name: str, available: dict[str, object]) -> Plugin:
    entry_point = available.get(name)
    if entry_point is None:
        known = ", ".join(sorted(available)) or "none installed"
        raise PluginError(
            f"PRINTZ_PLUGINS names {name!r}, which is not installed "
            f"(available: {known})"
        )
    try:
        plugin = entry_point.load()
    except Exception as error:
        raise PluginError(f"plugin {name!r} failed to import: {error!r}") from error
    if not isinstance(plugin, Plugin):
        raise PluginError(f"plugin {name!r} does not resolve to a printz Plugin")
    return plugin


def register_plugins(app: Flask) -> list[Plugin]:
    """Load, check and register every plugin named in PRINTZ_PLUGINS."""
    names = list(app.config["PRINTZ_PLUGINS"])
    available = available_plugins()
    loaded = [load_plugin(name, available) for name in names]

    for plugin in loaded:
        missing = [need for need in plugin.requires if need not in names]
        if missing:
            raise PluginError(
                f"plugin {plugin.name!r} needs {', '.join(missing)} in PRINTZ_PLUGINS"
            )
        try:
            if plugin.init_app is not None:
                plugin.init_app(app)
            if isinstance(plugin.blueprint, APIBlueprint):
                app.register_api(plugin.blueprint, url_prefix=plugin.url_prefix)
            else:
                app.register_blueprint(plugin.blueprint, url_prefix=plugin.url_prefix)
        except Exception as error:
            raise PluginError(
                f"plugin {plugin.name!r} failed to start: {error!r}"
            ) from error
        if plugin.cli is not None:
            app.cli.add_command(plugin.cli)
        for command in plugin.commands:
            printz_cli.add_command(command)

    app.extensions["printz.plugins"] = {plugin.name: plugin for plugin in loaded}
    log.info("plugins loaded: %s", ", ".join(names) or "none")
    return loaded
