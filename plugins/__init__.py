"""Printz's own feature plugins, each a blueprint found by entry point."""
