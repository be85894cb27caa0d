"""Telling people (a home for the scoring and reports issues): the notice to sales when a prospect is handed
over (mail through the configured sender and/or a JSON webhook, retried until delivered, escalated when nobody
acknowledges), and the weekly digest each owner gets.

May import (layers in pyproject.toml): ``deliver``, ``report``, ``postal`` and everything below them.
"""
