"""Composition: from a campaign's template and one prospect's data to the bytes of one mail. No database, no
network (an import-linter contract keeps ``nurture.store.db`` and the senders out).

Owns, one module per concept:

- :mod:`~nurture.compose.rendering`: the :class:`Renderer` (MJML compiled once per content hash, one sandboxed
  Jinja pass per prospect) and :class:`RenderedMessage`;
- :mod:`~nurture.compose.shared_plan`: the single-pass fast path the renderer takes when it can;
- :mod:`~nurture.compose.context`: what templates see (:func:`build_context`, :data:`PROSPECT_FIELDS`);
- :mod:`~nurture.compose.html_text`: the text part derived from the HTML (:func:`html_to_text`);
- :mod:`~nurture.compose.markup`: tracked links and the open pixel / honeypot (:func:`add_tracking_markup`);
- :mod:`~nurture.compose.links`: signed tracking URLs (imported as a module: ``from nurture.compose import
  links``);
- :mod:`~nurture.compose.message`: :class:`OutgoingMessage` and its RFC 5322 bytes (:func:`build_mime`).

May import (layers in pyproject.toml): ``plan``, ``people``, ``score``, ``track``, ``store`` (not ``store.db``)
and ``core``; today it needs ``core`` only. The footer requirements of a rendered mail are a check, in
:mod:`nurture.checks.footer`.
"""

from nurture.compose.context import PROSPECT_FIELDS, build_context
from nurture.compose.html_text import html_to_text
from nurture.compose.markup import NO_TRACK, RewriteLink, add_tracking_markup, rewrite_links
from nurture.compose.message import DkimKey, OutgoingMessage, build_mime, list_id_for, message_id_for, validate
from nurture.compose.rendering import CompiledTemplate, ItemLike, RenderedMessage, Renderer

__all__ = [
    "NO_TRACK",
    "PROSPECT_FIELDS",
    "CompiledTemplate",
    "DkimKey",
    "ItemLike",
    "OutgoingMessage",
    "RenderedMessage",
    "Renderer",
    "RewriteLink",
    "add_tracking_markup",
    "build_context",
    "build_mime",
    "html_to_text",
    "list_id_for",
    "message_id_for",
    "rewrite_links",
    "validate",
]
