"""Plugins load from entry points, only when listed, and fail loudly."""

from __future__ import annotations

import textwrap

import pytest

from printz import create_app
from printz.plugins import PluginError


def test_only_listed_plugins_are_served(settings):
    settings.update(PRINTZ_PLUGINS="catalog")
    app = create_app(settings)

    assert set(app.extensions["printz.plugins"]) == {"catalog"}
    assert app.test_client().get("/api/auth/me").status_code == 404


def test_unknown_plugin_stops_start_up_naming_it(settings):
    settings.update(PRINTZ_PLUGINS="auth,invoices")

    with pytest.raises(PluginError, match="'invoices', which is not installed"):
        create_app(settings)


def _install_distribution(root, name: str, module_source: str) -> None:
    """Lay out an installed distribution with a printz.plugins entry point."""
    package = root / f"{name}_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(module_source))
    dist_info = root / f"{name}_pkg-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}-pkg\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[printz.plugins]\n{name} = {name}_pkg:plugin\n"
    )


def test_a_third_party_distribution_can_ship_a_plugin(settings, tmp_path, monkeypatch):
    _install_distribution(
        tmp_path,
        "giftcards",
        """
        from flask import Blueprint
        from printz.plugins import Plugin

        bp = Blueprint("giftcards", __name__)

        @bp.get("/balance")
        def balance():
            return {"balance_cents": 0}

        plugin = Plugin(name="giftcards", blueprint=bp, url_prefix="/api/giftcards")
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.update(PRINTZ_PLUGINS="auth,giftcards")

    app = create_app(settings)

    response = app.test_client().get("/api/giftcards/balance")
    assert response.status_code == 200
    assert response.get_json() == {"balance_cents": 0}


def test_a_broken_plugin_stops_start_up_naming_it(settings, tmp_path, monkeypatch):
    _install_distribution(tmp_path, "broken", "raise ImportError('no such thing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.update(PRINTZ_PLUGINS="auth,broken")

    with pytest.raises(PluginError, match="plugin 'broken' failed to import"):
        create_app(settings)
