"""Production serving settings, also used by ``make run``.

Every value can be set from the environment (``PRINTZ_WORKERS``...), so the
same file serves a laptop and a fleet.

Worker class: chat answers are long-lived streams that mostly wait on the
model server. gthread workers hold one OS thread per open stream; gevent
workers hold a greenlet each. The default is gevent: in the stream benchmark
(bench/stream_capacity.py, 50 chunks/s per stream, same machine, same
counts) gevent carried 50 streams with p95 at 1.21x the model's own where
gthread needed 1.50x, and at 100 and 200 streams it stayed ahead (2.9x vs
3.3x, 7.2x vs 11.5x). PRINTZ_WORKER_CLASS=gthread remains supported.
"""

import os

DEFAULT_WORKER_CLASS = "gevent"

if (os.environ.get("PRINTZ_WORKER_CLASS") or DEFAULT_WORKER_CLASS) == "gevent":
    # Patch before anything else is imported. Loading settings below imports
    # printz, hence sentry_sdk, in the master; patched only later in the
    # worker, the SDK's threads and locks mix real and green primitives and
    # its monitor deadlocks on the first traced request.
    from gevent import monkey

    monkey.patch_all()

import multiprocessing  # noqa: E402 - after the gevent patch on purpose

from printz.config import load_settings  # noqa: E402


def _env(name: str, default):
    value = os.environ.get(f"PRINTZ_{name}")
    return type(default)(value) if value not in (None, "") else default


# HOST and PORT come from Printz's own settings, so instance/printz.cfg and
# the environment decide here exactly as they do for the app.
_settings = load_settings()
bind = f"{_settings['HOST']}:{_settings['PORT']}"
workers = _env("WORKERS", min(multiprocessing.cpu_count() * 2, 8))
worker_class = _env("WORKER_CLASS", DEFAULT_WORKER_CLASS)
threads = _env("THREADS", 32)
worker_connections = _env("WORKER_CONNECTIONS", 1000)
# A sync-style timeout would cut open chat streams; gthread and gevent workers
# heartbeat independently of requests, so this only catches a stuck worker.
timeout = _env("TIMEOUT", 120)
graceful_timeout = _env("GRACEFUL_TIMEOUT", 30)
keepalive = _env("KEEPALIVE", 5)
preload_app = _env("PRELOAD", 0) == 1
max_requests = _env("MAX_REQUESTS", 0)
max_requests_jitter = _env("MAX_REQUESTS_JITTER", 0)

accesslog = "-"
errorlog = "-"
# Request id and duration in milliseconds on every access line. The path is
# logged without its query string (%(U)s, not the request line %(r)s): a
# client may put a token or password there, and logs keep no secret.
access_log_format = (
    '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms req=%({x-request-id}o)s ua="%(a)s"'
)


def on_starting(server):
    """gunicorn's own warnings quote a bad request's raw line: scrub them."""
    from printz.observability.logs import scrub_logger

    scrub_logger("gunicorn.error")


def post_worker_init(worker):
    """Keep the loaded app out of the garbage collector's sweeps.

    Everything a worker has once the app is loaded (modules, schemas, the
    SDK) lives as long as the worker. ``gc.freeze`` moves it out of the
    collected generations, so a full collection walks only what requests
    made: a chat stream allocates with every chunk it relays, and full
    collections over the whole app were a tenth of a streaming worker's CPU.
    """
    import gc

    gc.collect()
    gc.freeze()


# Sentry hooks. Each process sends its own events from a background thread, and
# logs in batches every few seconds: what a process still holds when it goes
# away is lost unless it is flushed first. sentry_sdk is imported inside the
# hooks so the master imports it only when it runs the app (--preload).
SENTRY_FLUSH_S = 2.0


def _flush_sentry(timeout: float = SENTRY_FLUSH_S) -> bool:
    import sentry_sdk

    if not sentry_sdk.get_client().is_active():
        return False
    sentry_sdk.flush(timeout=timeout)
    return True


def pre_fork(server, worker):
    """With --preload the master has sent start-up logs: empty its queue first.

    A child inherits the parent's unsent envelopes and would send them again.
    """
    _flush_sentry()


def worker_exit(server, worker):
    """Send what Sentry still holds before the worker goes away."""
    if _flush_sentry():
        server.log.info("worker %s: Sentry events flushed", worker.pid)


def worker_abort(worker):
    """A worker killed for timing out still says why, briefly."""
    _flush_sentry(timeout=1.0)


def on_exit(server):
    """The master's own events (start-up logs under --preload)."""
    _flush_sentry()
