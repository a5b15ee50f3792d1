"""Sentry hooks, error handlers, scrubbing, sampling and the AI tracing helpers."""
