"""What nurture changes in a mail's HTML after the template: tracked links and the tracking markup.

Contract: every ``<a href="http(s)://...">`` is offered to the sender's ``rewrite_link(url, index)`` hook
(click tracking), ``index`` counting the offered links from 0 in document order; links marked
``data-nurture="no-track"`` (unsubscribe, preferences, view in browser, the sender's website, the tracking
markup itself) are never offered. The text part keeps the original URLs: it is what a reader copies from, and is
not click-tracked. :func:`tracked_href` is the one test of "is this anchor tracked", shared with the single-pass
planner (``nurture.compose.shared_plan``), which rewrites links during the Jinja render instead of scanning.
"""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Callable

#: The hook that click tracking gives the renderer: ``(url, index) -> new url``, or None to keep the link.
RewriteLink = Callable[[str, int], "str | None"]

#: The ``data-nurture`` value that keeps a link away from click tracking (unsubscribe, preferences, view).
NO_TRACK = "no-track"

#: An ``<a ...>`` start tag.
ANCHOR_TAG = re.compile(r"<[aA]\s[^>]*>")
_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
_NO_TRACK = re.compile(r"""\bdata-nurture\s*=\s*["']?""" + NO_TRACK, re.I)


def tracked_href(tag: str) -> tuple[int, int] | None:
    """Where the href value of the ``<a>`` start tag ``tag`` starts and ends, or None when the tag has no href
    or is marked ``data-nurture="no-track"``. The value is as written (HTML-escaped); the caller decides whether
    it is an http(s) URL."""
    href = _HREF.search(tag)
    if href is None or _NO_TRACK.search(tag):
        return None
    return href.start(3), href.end(3)


def rewrite_links(html: str, rewrite_link: RewriteLink) -> str:
    """``html`` with each tracked http(s) ``<a href>`` replaced by what ``rewrite_link(url, index)`` returns
    (None keeps it).

    This scans the rendered HTML (about 20 us for a 20 kB mail); templates the single-pass planner handles
    (all shipped ones) get their links rewritten during the Jinja render instead.
    """
    index = 0

    def anchor(match: re.Match[str]) -> str:
        nonlocal index
        tag = match.group(0)
        span = tracked_href(tag)
        if span is None:
            return tag
        start, end = span
        url = htmlmod.unescape(tag[start:end]).strip()
        if not url[:8].lower().startswith(("http://", "https://")):
            return tag
        new = rewrite_link(url, index)
        index += 1
        if new is None or new == url:
            return tag
        return tag[:start] + htmlmod.escape(new, quote=True) + tag[end:]

    return ANCHOR_TAG.sub(anchor, html)


def add_tracking_markup(html: str, *, open_pixel: str | None = None, honeypot: str | None = None) -> str:
    """``html`` with the open pixel and the bot honeypot link placed just before ``</body>``.

    Both are invisible to people and carry ``data-nurture="no-track"`` so they are never rewritten; the
    honeypot has no text and sits in a hidden element, so people neither see nor follow it (and the text part,
    rendered earlier, never contains it). Call after :meth:`nurture.compose.rendering.Renderer.render`.
    """
    parts = []
    if honeypot:
        parts.append(
            f'<div style="display:none;max-height:0;overflow:hidden;mso-hide:all;" aria-hidden="true">'
            f'<a href="{htmlmod.escape(honeypot)}" data-nurture="no-track" tabindex="-1"></a></div>'
        )
    if open_pixel:
        parts.append(
            f'<img src="{htmlmod.escape(open_pixel)}" width="1" height="1" alt="" '
            f'style="display:block;width:1px;height:1px;border:0;" data-nurture="no-track">'
        )
    if not parts:
        return html
    snippet = "".join(parts)
    end = html.rfind("</body>")
    return html[:end] + snippet + html[end:] if end != -1 else html + snippet
