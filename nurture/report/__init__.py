"""Reports (a home for a later issue; nothing lives here yet).

What will live here: read-only queries that turn deliveries, events and prospects into rows (sent, opened,
clicked and unsubscribed per campaign and item, follow-up leaks, score movements), and renderers that print the
same rows as a terminal table, CSV, JSON, XLSX or an HTML page (with charts), plus the periodic digest. Reports
never write: they read the store and what the lower stages compute.

May import (layers in pyproject.toml): ``checks``, ``compose``, ``plan``, ``people``, ``score``, ``track``,
``store`` and ``core``; not ``deliver``, its sibling on the same layer.
"""
