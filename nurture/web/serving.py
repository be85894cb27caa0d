"""What ``nurture serve`` gives uvicorn besides the app: :class:`NoDelayHttpToolsProtocol`.

Imported by the serve command only (it imports uvicorn's protocol at once); worker processes of
``nurture serve --workers N`` import it by name when they unpickle their configuration.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with TCP_NODELAY on every connection.

    The pixel's answer is two writes (headers, then the GIF); without TCP_NODELAY the second waits for the
    client's delayed ACK, ~40 ms a pixel. asyncio sets TCP_NODELAY by itself only on sockets created with
    IPPROTO_TCP: uvicorn's listening socket for one process is, the one it binds for ``--workers`` is not (the
    pixel's hits/s fell to a third with 4 workers in bench/track.py before this).
    """

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
