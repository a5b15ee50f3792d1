"""Settings: defaults < instance/printz.cfg < environment.

Every setting has a name (``MONGO_URI``, ``PRINTZ_PLUGINS``...). It is read from
the environment as ``PRINTZ_<NAME>`` (a name that already starts with
``PRINTZ_`` is read as it is). The settings that outside tools know by their
plain name (``SECRET_KEY``, ``SENTRY_DSN``, ``OPENAI_API_KEY``...) are also read
under that plain name; the prefixed form wins when both are set.
"""

from __future__ import annotations

import json
import os
import re
import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from printz.observability.tokens import parse_price_table

ENV_PREFIX = "PRINTZ_"
DEV_SECRET_KEY = "printz-development-only-not-a-secret"
ENVIRONMENTS = ("development", "test", "production")


class ConfigError(RuntimeError):
    """A setting has a value Printz cannot run with; start-up stops."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    plain_env: bool = False
    secret: bool = False
    check: Callable[[Any], str | None] | None = None


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value not in allowed:
            return "must be one of " + ", ".join(allowed)
        return None

    return check


def _rate(value: Any) -> str | None:
    if not 0.0 <= value <= 1.0:
        return "must be a number from 0.0 to 1.0"
    return None


def _positive(value: Any) -> str | None:
    if value <= 0:
        return "must be greater than 0"
    return None


def _port(value: Any) -> str | None:
    if not 0 < value < 65536:
        return "must be a port number from 1 to 65535"
    return None


def _model_prices(value: Any) -> str | None:
    try:
        parse_price_table(value)
    except ValueError as error:
        return str(error)
    return None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "PRINTZ_ENV",
        "development",
        "development, test or production",
        check=_one_of(*ENVIRONMENTS),
    ),
    Setting(
        "SECRET_KEY",
        DEV_SECRET_KEY,
        "signs sessions; production refuses to start without a real one",
        plain_env=True,
        secret=True,
    ),
    Setting("MONGO_URI", None, "MongoDB connection string", plain_env=True),
    Setting("MONGO_DB_NAME", "printz", "database used when the URI names none"),
    Setting(
        "MONGO_TIMEOUT_MS",
        3000,
        "server selection, connect and socket timeout for MongoDB",
        check=_positive,
    ),
    Setting("REDIS_URL", None, "Redis URL", plain_env=True),
    Setting(
        "REDIS_TIMEOUT_S", 2.0, "connect and socket timeout for Redis", check=_positive
    ),
    Setting("SENTRY_DSN", None, "Sentry DSN; Sentry is off when unset", plain_env=True),
    Setting("SENTRY_ENVIRONMENT", None, "defaults to PRINTZ_ENV", plain_env=True),
    Setting(
        "SENTRY_RELEASE", None, "defaults to printz@<version>+<commit>", plain_env=True
    ),
    Setting(
        "SENTRY_TRACES_SAMPLE_RATE",
        0.2,
        "base trace rate; the chat route is always traced",
        plain_env=True,
        check=_rate,
    ),
    Setting(
        "SENTRY_PROFILE_SESSION_SAMPLE_RATE",
        0.0,
        "continuous profiling share of processes; 0 is off",
        check=_rate,
    ),
    Setting(
        "SENTRY_SPOTLIGHT",
        None,
        "Spotlight sidecar URL or 'true'; never used in production",
        plain_env=True,
    ),
    Setting(
        "SENTRY_SEND_USER_EMAIL", False, "attach the customer's email to Sentry events"
    ),
    Setting(
        "SENTRY_SEND_AI_CONTENT",
        False,
        "send chat prompts, answers and tool arguments to Sentry",
    ),
    Setting(
        "SENTRY_TRACE_PROPAGATION_TARGETS",
        (),
        "comma-separated hosts (host or host:port) of Printz's own services that "
        "receive trace headers; never the model server",
    ),
    Setting(
        "SENTRY_TRANSPORT_QUEUE_SIZE",
        1000,
        "envelopes waiting for Sentry before new ones are dropped",
        check=_positive,
    ),
    Setting(
        "PRINTZ_MODEL_PRICES",
        {},
        'JSON: model -> {"input", "output", "cached_input"} in USD per million '
        "tokens; the cost on AI spans and in the usage ledger",
        check=_model_prices,
    ),
    Setting(
        "OPENAI_API_KEY", None, "model server API key", plain_env=True, secret=True
    ),
    Setting("OPENAI_BASE_URL", None, "OpenAI-compatible server URL", plain_env=True),
    Setting("PRINTZ_CHAT_MODEL", "gpt-4o-mini", "default chat model"),
    Setting(
        "PRINTZ_CHAT_MODELS",
        (),
        "other models a client may ask for (comma-separated allowlist)",
    ),
    Setting(
        "PRINTZ_CHAT_MAX_STEPS", 5, "model calls per chat turn at most", check=_positive
    ),
    Setting(
        "PRINTZ_CHAT_TIMEOUT_S",
        60.0,
        "longest wait for the model's next chunk (and first token)",
        check=_positive,
    ),
    Setting(
        "PRINTZ_CHAT_CONNECT_TIMEOUT_S",
        5.0,
        "longest wait to connect to the model server",
        check=_positive,
    ),
    Setting(
        "PRINTZ_CHAT_RETRIES",
        1,
        "retries of a model call that fails before its first token",
        check=lambda v: None if 0 <= v <= 5 else "must be from 0 to 5",
    ),
    Setting(
        "PRINTZ_CHAT_KEEPALIVE_S",
        10.0,
        "keep-alive comment interval while the model or a tool is silent",
        check=_positive,
    ),
    Setting(
        "PRINTZ_CHAT_RELAY_WINDOW_MS",
        50,
        "how long the model's chunks gather before they are relayed together",
        check=lambda v: None if 0 <= v <= 500 else "must be from 0 to 500",
    ),
    Setting(
        "PRINTZ_CHAT_DAILY_MESSAGES",
        200,
        "chat messages per customer per UTC day",
        check=_positive,
    ),
    Setting(
        "PRINTZ_CHAT_DAILY_TOKENS",
        500_000,
        "model tokens per customer per UTC day",
        check=_positive,
    ),
    Setting(
        "PRINTZ_CHAT_MAX_INPUT_CHARS",
        4000,
        "longest customer message",
        check=_positive,
    ),
    Setting(
        "PRINTZ_CHAT_RETENTION_DAYS",
        180,
        "days a conversation is kept after its last message (TTL index)",
        check=_positive,
    ),
    Setting(
        "PRINTZ_PLUGINS",
        ("auth", "catalog", "orders", "chat"),
        "comma-separated plugins to load",
    ),
    Setting(
        "PRINTZ_ALLOWED_ORIGINS",
        (),
        "comma-separated front-end origins allowed to change state and use CORS",
    ),
    Setting(
        "PRINTZ_SESSION_LIFETIME_S",
        14 * 24 * 3600,
        "how long a signed-in session lasts",
        check=_positive,
    ),
    Setting(
        "PRINTZ_MAX_BODY_BYTES", 1024 * 1024, "largest request body", check=_positive
    ),
    Setting("PRINTZ_LOGIN_LIMIT_ACCOUNT", "5 per minute", "login attempts per email"),
    Setting(
        "PRINTZ_LOGIN_LIMIT_ADDRESS", "20 per minute", "login attempts per address"
    ),
    Setting(
        "PRINTZ_TRUSTED_PROXIES",
        0,
        "how many proxies in front set X-Forwarded-*",
        check=lambda v: None if v >= 0 else "must be 0 or more",
    ),
    Setting("HOST", "127.0.0.1", "where make run listens", plain_env=True),
    Setting("PORT", 5000, "where make run listens", plain_env=True, check=_port),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}


def env_names(setting: Setting) -> list[str]:
    """Environment variables a setting is read from, strongest first."""
    if setting.name.startswith(ENV_PREFIX):
        return [setting.name]
    names = [ENV_PREFIX + setting.name]
    if setting.plain_env:
        names.append(setting.name)
    return names


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL_NUMBER = re.compile(
    r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII
)


def _coerce(setting: Setting, raw: Any) -> Any:
    """Turn a raw value (a string from the environment) into the default's type."""
    default = setting.default
    if not isinstance(raw, str) or isinstance(default, str) or default is None:
        if isinstance(default, tuple) and isinstance(raw, list | tuple):
            return tuple(raw)
        return raw
    text = raw.strip()
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{setting.name}={raw!r}: must be true or false")
    if isinstance(default, int | float):
        # Plain decimal only: int() and float() also take "1_0", other
        # scripts' digits, "inf" and "nan", none of which an operator means.
        pattern = _WHOLE_NUMBER if isinstance(default, int) else _DECIMAL_NUMBER
        if not pattern.fullmatch(text):
            kind = "a whole number" if isinstance(default, int) else "a number"
            raise ConfigError(f"{setting.name}={raw!r}: must be {kind}")
        return type(default)(text)
    if isinstance(default, tuple):
        if text.startswith("["):
            return tuple(json.loads(text))
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return raw


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    instance_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Read and validate every setting; raise ConfigError naming the bad key."""
    environ = os.environ if environ is None else environ
    instance_path = Path(instance_path or default_instance_path())
    values = {setting.name: setting.default for setting in SETTINGS}

    cfg_file = instance_path / "printz.cfg"
    if cfg_file.is_file():
        from_file = runpy.run_path(str(cfg_file))
        values.update({k: v for k, v in from_file.items() if k.isupper()})

    for setting in SETTINGS:
        for name in env_names(setting):
            if name in environ:
                values[setting.name] = environ[name]
                break

    values.update(overrides or {})

    for name, value in list(values.items()):
        setting = BY_NAME.get(name)
        if setting is None:
            continue
        values[name] = value = _coerce(setting, value)
        if setting.check and value is not None:
            problem = setting.check(value)
            if problem:
                raise ConfigError(f"{name}={value!r}: {problem}")

    if values["PRINTZ_ENV"] == "production" and values["SECRET_KEY"] in (
        DEV_SECRET_KEY,
        None,
        "",
    ):
        raise ConfigError(
            "SECRET_KEY: production needs a real secret key "
            "(set PRINTZ_SECRET_KEY to a long random string)"
        )
    values["INSTANCE_PATH"] = str(instance_path)
    return values


def default_instance_path() -> Path:
    """The project's instance/ folder, unless PRINTZ_INSTANCE_PATH names another."""
    configured = os.environ.get("PRINTZ_INSTANCE_PATH")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "instance"


def public_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """Settings safe to log at start-up: secrets and credentials are masked."""
    shown = {}
    for setting in SETTINGS:
        value = values.get(setting.name)
        if setting.secret and value:
            value = "***"
        elif isinstance(value, str) and "://" in value and "@" in value:
            scheme, rest = value.split("://", 1)
            value = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        shown[setting.name] = value
    return shown


def apply_to_app(app, values: Mapping[str, Any]) -> None:
    """Copy settings into app.config along with the Flask keys derived from them."""
    app.config.update(values)
    production = values["PRINTZ_ENV"] == "production"
    app.config.update(
        TESTING=values["PRINTZ_ENV"] == "test",
        MAX_CONTENT_LENGTH=values["PRINTZ_MAX_BODY_BYTES"],
        PERMANENT_SESSION_LIFETIME=values["PRINTZ_SESSION_LIFETIME_S"],
        SESSION_COOKIE_NAME="printz_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=production,
        # A session lasts PRINTZ_SESSION_LIFETIME_S from sign-in. Sliding it
        # would rewrite it in Redis on every request, a write (and a span) per
        # request for a longer life nobody asked for.
        SESSION_REFRESH_EACH_REQUEST=False,
        JSON_SORT_KEYS=False,
    )
