"""HTML -> PDF with WeasyPrint (fonts embedded as subsets, so a print shop's machine needs no Japanese font).

WeasyPrint needs the Pango library of the operating system; it is imported on first use so that every other
command works without it, and a missing library is a clear error, not a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nurture.core.errors import ConfigError


def write_pdf(html: str, path: Path, base_url: str | None = None) -> None:
    """Write ``html`` as a PDF to ``path``."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the Pango shared library is missing
        raise ConfigError(
            f"cannot make PDF files: {exc}",
            hint="install WeasyPrint's system libraries, e.g. apt-get install libpango-1.0-0 libpangoft2-1.0-0",
        ) from None
    # Mail HTML carries CSS for mail clients (mso-*, media queries) that a printer ignores: not worth a warning.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    weasyprint.HTML(string=html, base_url=base_url).write_pdf(str(path))
