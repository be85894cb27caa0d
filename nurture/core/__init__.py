"""The ground every stage stands on: no I/O beyond reading files, no database, no network.

Owns :mod:`~nurture.core.errors` (the one error tree: :class:`~nurture.core.errors.NurtureError` and its
children, configuration errors apart), :mod:`~nurture.core.clock` (``clock.now()``: aware UTC, fixed in tests
and by ``NURTURE_NOW``), :mod:`~nurture.core.config` (``nurture.toml`` as frozen dataclasses; flag >
environment > file > default) and :mod:`~nurture.core.tomlschema` (TOML checked against dataclasses, every
problem reported as ``file:line:``).

May import nothing of nurture's: it is the bottom layer (pyproject.toml). Import its modules directly
(``from nurture.core.errors import ConfigError``); this package re-exports nothing, so that a stage importing
the error tree does not also load the configuration schema.
"""
