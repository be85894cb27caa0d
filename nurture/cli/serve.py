"""``nurture serve``: run the tracking server (opens, clicks, unsubscribe, preferences, webhooks) under uvicorn."""

from __future__ import annotations

import gc
import sys

import click

from nurture.cli.app import App, pass_app


@click.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Keep 127.0.0.1 behind a reverse proxy that terminates HTTPS.",
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="uvicorn log level.",
)
@pass_app
def serve(app: App, host: str, port: int, log_level: str) -> None:
    """Serve tracking links, the one-click unsubscribe and the SendGrid Event Webhook.

    \b
    The public address in mails is [tracking] base_url; point it (through your HTTPS reverse proxy) here.
    Endpoints: /o/… open pixel, /c/… clicks, /u/… unsubscribe (RFC 8058 one-click POST),
    /p/… preferences, /v/… view in browser, /webhooks/sendgrid, /healthz.
    Needs [tracking] secret (or NURTURE_SECRET). Stop with Ctrl-C: queued events are written before exit.
    """
    # Imported here, not at the top: every other command starts without the web stack (uvicorn, Starlette).
    import uvicorn

    from nurture.web import create_app

    # The event buffer's writer thread shares the GIL with the event loop; a 1 ms switch interval (default 5 ms)
    # lets the loop answer pixels between slices of a batch write (p99 latency, bench/track.py).
    sys.setswitchinterval(0.001)
    engine = app.engine()
    web_app = create_app(app.config, engine=engine)
    # Everything imported and built so far lives as long as the process: move it out of the cyclic garbage
    # collector's sight, so full collections stay short and do not stall the event loop (p99 latency).
    gc.freeze()
    click.echo(f"nurture tracking server on http://{host}:{port} (public URL {app.config.tracking.base_url})")
    # proxy_headers (uvicorn's default) takes the client address from X-Forwarded-For when the proxy is on
    # 127.0.0.1 (forwarded_allow_ips), which bot labels need.
    uvicorn.run(web_app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")


COMMANDS = [serve]
