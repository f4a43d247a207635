"""Deciding which pending sessions start now: pure functions over slots and limits."""
