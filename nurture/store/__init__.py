"""The store: the tables and every statement that depends on the database's dialect.

Owns :mod:`~nurture.store.models` (the tables, SQLAlchemy 2, and their vocabularies), :mod:`~nurture.store.states`
(delivery states, attempt outcomes and plan decisions as one vocabulary), :mod:`~nurture.store.db` (engines,
transactions, ``BEGIN IMMEDIATE`` on SQLite, bulk inserts, schema upgrades through ``migrations/``) and
:mod:`~nurture.store.suppression` (the addresses never to mail again, keyed by hash). SQLite is the default and
PostgreSQL works the same; every database test runs on both.

May import ``nurture.core`` only (layers in pyproject.toml). Import its modules directly
(``from nurture.store.models import Prospect``); this package re-exports nothing, because ``nurture.compose`` and
``nurture.checks`` use the models but must not load :mod:`~nurture.store.db` (an import-linter contract).
"""
