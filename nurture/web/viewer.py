"""``/v`` (view in browser): the mail re-rendered from the campaigns as they were when the server started.

:class:`MailViewer` loads every campaign file once, when the app is created, and keeps one
:class:`~nurture.compose.rendering.Renderer` (templates are compiled on first use and kept). No request reads a
campaign file: changes to campaign files and templates reach ``/v`` after ``nurture serve`` restarts. A campaign
file that does not load at start is logged and skipped; ``/v`` for its mails shows the page saying when the mail
was sent instead (as for an item removed from its campaign).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import RowMapping

from nurture.compose import Renderer, build_context
from nurture.core.config import Config
from nurture.core.errors import NurtureError
from nurture.plan.campaigns import Campaign, ContentItem, campaign_files, display_path, load_campaign

log = logging.getLogger(__name__)

#: For a re-rendered mail: images and styles from anywhere (mail HTML is built that way), nothing active.
MAIL_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline' https:; "
    "font-src https: data:; form-action 'none'; frame-ancestors 'none'",
}


class MailViewer:
    """The campaigns by name, and the renderer that shows their mails again.

    :meth:`render` is safe from several threads: renders share one Renderer under a lock (``/v`` is rare and a
    render of a compiled template is short; one compile cache then serves every thread).
    """

    def __init__(self, config: Config, campaigns: Iterable[Campaign]) -> None:
        """``campaigns`` by their ``name``; a name two campaigns claim is left out (``nurture send`` refuses
        such files too, so neither can be the one that sent the mail)."""
        self.config = config
        by_name: dict[str, Campaign] = {}
        claimed: dict[str, list[Campaign]] = {}
        for campaign in campaigns:
            claimed.setdefault(campaign.name, []).append(campaign)
        for name, found in claimed.items():
            if len(found) == 1:
                by_name[name] = found[0]
            else:
                log.warning(
                    'campaign name "%s" is in %s: /v shows neither',
                    name,
                    " and ".join(display_path(c.path) for c in found),
                )
        self.campaigns: Mapping[str, Campaign] = by_name
        self._renderer = Renderer(config.templates_dir)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, config: Config) -> MailViewer:
        """A viewer of every campaign file in ``config.campaigns_dir`` that loads; the others are logged."""
        loaded = []
        for path in campaign_files(config):
            try:
                loaded.append(load_campaign(path, config))
            except NurtureError as exc:
                log.warning(
                    "campaign file %s is skipped for /v until it is fixed and nurture serve restarts: %s",
                    display_path(path),
                    exc,
                )
            except Exception:
                log.warning("campaign file %s is skipped for /v", display_path(path), exc_info=True)
        return cls(config, loaded)

    def item(self, campaign: str, item_key: str) -> tuple[Campaign, ContentItem] | None:
        """The campaign called ``campaign`` and its item ``item_key``, if both were loaded."""
        found = self.campaigns.get(campaign)
        item = found.find_item(item_key) if found is not None else None
        return (found, item) if found is not None and item is not None else None

    def render(
        self, campaign: str, item_key: str, prospect: RowMapping | Mapping[str, Any], urls: Mapping[str, str]
    ) -> str | None:
        """The HTML of item ``item_key`` of ``campaign`` for ``prospect`` (a ``prospects`` row), as it renders now
        and without tracking: links go straight to their targets and there is no pixel. ``urls`` are the mail's
        own unsubscribe, preferences and view links (:func:`nurture.compose.links.urls_for`).

        None if the campaign or item is not loaded, or the template fails (logged): the caller shows a page
        instead.
        """
        found = self.item(campaign, item_key)
        if found is None:
            return None
        loaded, item = found
        try:
            context = build_context(self.config, loaded, item, prospect, urls)
            with self._lock:
                return self._renderer.render(item, context).html
        except Exception:
            log.warning("cannot re-render %s/%s for the browser", campaign, item_key, exc_info=True)
            return None
