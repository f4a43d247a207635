"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web

from portside.services.platform import Platform

PLATFORM = web.AppKey("platform", Platform)
