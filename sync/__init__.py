"""Lineside sync: a durable SQLite outbox and store-and-forward delivery to destinations."""
