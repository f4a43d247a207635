"""Portside's Backend.AI client SDK: the ``ai.backend.client`` API that the examples page uses.

It speaks the same wire protocol as the official ``backend.ai-client`` package and accepts the
spellings of both the examples page and today's official client (see ``NOTES.md`` of the seed).
"""

__version__ = "0.1.0"
