"""Accounts: sign up, sign in, sign out and who am I."""

from plugins.auth import service, views
from printz.plugins import Plugin

plugin = Plugin(
    name="auth",
    blueprint=views.bp,
    url_prefix="/api/auth",
    init_app=service.init_app,
    commands=(views.create_staff_command,),
    create_indexes=service.create_indexes,
)
