"""The tracking server (``nurture serve``): the ASGI app that answers the links in a mail and providers' webhooks.

Owns one module per group of routes, each taking the :class:`~nurture.web.site.Site` it serves as an argument:

- :mod:`~nurture.web.app` — :func:`create_app` assembles the Starlette app, the event buffer's lifespan, ``/healthz``;
- :mod:`~nurture.web.hot` — the open pixel and click redirects (raw ASGI, benchmarked by bench/track.py), honeypot;
- :mod:`~nurture.web.pages` — unsubscribe (incl. RFC 8058 one-click), preferences, view in browser;
- :mod:`~nurture.web.webhooks` — provider event webhooks;
- :mod:`~nurture.web.forms` — form bodies: bounded reads, urlencoded and multipart fields;
- :mod:`~nurture.web.site` — the shared :class:`~nurture.web.site.Site` and the page renderer;
- :mod:`~nurture.web.viewer` — the campaigns loaded at start and the renderer ``/v`` uses.

May import every package below it (deliver, report, checks, compose, plan, people, score, track, store, core);
nothing imports it but the CLI. Every database write goes through :func:`nurture.track.record_events`.
"""

from nurture.web.app import create_app

__all__ = ["create_app"]
