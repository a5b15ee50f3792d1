"""Printz: the customer backend of an online print shop."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask_openapi3 import Info, OpenAPI
from werkzeug.middleware.proxy_fix import ProxyFix

from printz import cli, config, health, instrument, security
from printz.extensions import init_extensions
from printz.observability import context, errors, logs
from printz.plugins import register_plugins
from printz.validation import validation_failed

log = logging.getLogger(__name__)

__all__ = ["create_app"]


def create_app(overrides: Mapping[str, Any] | None = None) -> OpenAPI:
    """Build the Printz app; each step is one call, in the order it must run."""
    settings = config.load_settings(overrides)
    logs.configure_logging(settings)
    instrument.init_sentry(settings)

    app = _make_flask_app()
    config.apply_to_app(app, settings)
    log.info("starting with settings %s", config.public_settings(settings))

    init_extensions(app)
    context.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    health.init_app(app)
    register_plugins(app)
    cli.init_app(app)
    _trust_proxies(app)
    return app


def _make_flask_app() -> OpenAPI:
    return OpenAPI(
        __name__,
        info=Info(title="Printz", version=_version()),
        doc_prefix="/api",
        doc_url="/openapi.json",
        validation_error_status=422,
        validation_error_callback=validation_failed,
        instance_path=str(config.default_instance_path()),
    )


def _trust_proxies(app: OpenAPI) -> None:
    """Behind N proxies, take client address and scheme from X-Forwarded-*."""
    hops = app.config["PRINTZ_TRUSTED_PROXIES"]
    if hops:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("printz")
    except metadata.PackageNotFoundError:
        return "0.0.0"
