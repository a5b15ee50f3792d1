"""What Printz tells Sentry and its logs, and what it keeps to itself.

- ``context``: request id, user, tags and breadcrumb of every request
- ``errors``: the JSON error body and the one report per failure
- ``scrub``: the scrubber every payload passes before it leaves the process
- ``sampling``: which requests are traced
- ``release``: the release name events are grouped under
- ``logs``: log records stamped with request and user; console or JSON lines
- ``streaming``: a response body that keeps its request's trace open
- ``ai``, ``ai_spans``: tracing of agent turns, model calls and tool calls
- ``tokens``: token usage and its cost
- ``metrics``: counters, gauges and distributions
- ``check``: ``flask printz sentry-check``

The instrument step that starts the SDK is ``printz.instrument``.
"""
