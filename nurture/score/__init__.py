"""Scoring (a home for a later issue; nothing lives here yet).

What will live here: the lead score of each prospect as fit (who they are: industry, title, the strength
fields of the import) plus engagement (what they did: opens and clicks labelled human, replies, seminars,
meetings), with engagement decaying over time; the A/B/C rank and the hot/warm/cold temperature derived from
it, their history, and the handoff to sales when a prospect crosses the line. The online update is a listener
on :func:`nurture.track.record_events` (``add_listener``), so every recorded event updates the score in
the same transaction without the tracking package knowing about scoring.

May import (layers in pyproject.toml): ``track``, ``store`` and ``core``.
"""
