"""People: the prospects, as the tables people keep in Excel go in and as the CLI shows them.

Owns:

- :mod:`~nurture.people.tabular`: reading CSV/TSV/XLSX with the row numbers Excel shows, encodings detected;
- :mod:`~nurture.people.cells`: one cell as a checked field value (:class:`RowError`, :class:`Rejected`);
- :mod:`~nurture.people.prospects`: the prospect import (:func:`import_file`, :class:`ImportSummary`);
- :mod:`~nurture.people.queries`: reading prospects back (:func:`list_prospects`, :func:`get_prospect`,
  :func:`find_prospect`);
- :mod:`~nurture.people.events_import`: offline touch points from a spreadsheet (:func:`import_offline_events`),
  recorded through :func:`nurture.track.record_events`;
- :mod:`~nurture.people.export`: the list as a CSV/XLSX file the import reads back unchanged
  (:func:`export_prospects`);
- :mod:`~nurture.people.operator`: what an operator does by hand (:func:`suppress`, :func:`unsuppress`,
  :func:`erase`, :func:`import_suppressions`).

May import (layers in pyproject.toml): ``score``, ``track``, ``store`` and ``core``.
"""

from nurture.people.cells import Rejected, RowError
from nurture.people.events_import import EventImport, import_offline_events
from nurture.people.export import ExportSummary, export_prospects
from nurture.people.operator import erase, import_suppressions, suppress, unsuppress
from nurture.people.prospects import ImportSummary, import_file
from nurture.people.queries import find_prospect, get_prospect, list_prospects
from nurture.people.tabular import Table, read_table

__all__ = [
    "EventImport",
    "ExportSummary",
    "ImportSummary",
    "Rejected",
    "RowError",
    "Table",
    "erase",
    "export_prospects",
    "find_prospect",
    "get_prospect",
    "import_file",
    "import_offline_events",
    "import_suppressions",
    "list_prospects",
    "read_table",
    "suppress",
    "unsuppress",
]
