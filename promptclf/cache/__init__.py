"""Caches: the answer store (SQLite, Redis), choosing one by URL, export/import, the cache in front of a method."""
