"""``flask printz ...`` commands and the shell context."""

from __future__ import annotations

import logging

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from printz.extensions import mongo, redis_store
from printz.observability.check import sentry_check_command

log = logging.getLogger(__name__)

printz_cli = AppGroup("printz", help="Printz maintenance commands.")
printz_cli.add_command(sentry_check_command)


def loaded_plugins():
    return current_app.extensions.get("printz.plugins", {}).values()


def create_indexes() -> list[str]:
    """Create every loaded plugin's MongoDB indexes; returns the plugin names."""
    done = []
    for plugin in loaded_plugins():
        if plugin.create_indexes is not None:
            plugin.create_indexes(mongo.db)
            done.append(plugin.name)
    return done


def seed_data() -> dict[str, int]:
    """Load every loaded plugin's seed data; returns what each one wrote."""
    return {
        plugin.name: plugin.seed(mongo.db)
        for plugin in loaded_plugins()
        if plugin.seed is not None
    }


@printz_cli.command("init-db")
def init_db_command() -> None:
    """Create every plugin's MongoDB indexes (safe to run again)."""
    for name in create_indexes():
        click.echo(f"indexes ready: {name}")


@printz_cli.command("seed")
def seed_command() -> None:
    """Load the plugins' seed data (safe to run again)."""
    for name, count in seed_data().items():
        click.echo(f"seeded {name}: {count}")


def _shell_context() -> dict:
    return {"app": current_app, "db": mongo.db, "redis": redis_store.client}


def init_app(app: Flask) -> None:
    app.cli.add_command(printz_cli)
    app.shell_context_processor(_shell_context)
