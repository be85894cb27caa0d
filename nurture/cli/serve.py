"""``nurture serve``: run the tracking server (opens, clicks, unsubscribe, preferences, webhooks) under uvicorn."""

from __future__ import annotations

import gc
import inspect
import os
import sys
import tempfile
from typing import Any

import click

from nurture.cli.app import App, pass_app
from nurture.core import logs


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
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="uvicorn worker processes (one per CPU core is a good start). Each buffers its own hits; /metrics "
    "sums all of them (prometheus-client multiprocess mode).",
)
@pass_app
def serve(app: App, host: str, port: int, log_level: str, workers: int) -> None:
    """Serve tracking links, the one-click unsubscribe and the SendGrid Event Webhook.

    \b
    The public address in mails is [tracking] base_url; point it (through your HTTPS reverse proxy) here.
    Endpoints: /o/… open pixel, /c/… clicks, /u/… unsubscribe (RFC 8058 one-click POST),
    /p/… preferences, /v/… view in browser, /webhooks/sendgrid, /healthz.
    Needs [tracking] secret (or NURTURE_SECRET). Stop with Ctrl-C: queued events are written before exit.
    /metrics serves Prometheus metrics and /healthz answers 503 when the database does not: keep both
    off the public proxy. --log-format json (on `nurture`) writes the server's log as JSON lines.
    """
    # Imported here, not at the top: every other command starts without the web stack (uvicorn, Starlette).
    import uvicorn

    from nurture.web import create_app
    from nurture.web.serving import NoDelayHttpToolsProtocol

    # With --log-format, uvicorn's loggers go through ours (log_config=None leaves them unconfigured, so they
    # propagate to the root handler); without it, uvicorn's own text format as before.
    log_config: dict[str, Any] | None = None if app.log_format else uvicorn.config.LOGGING_CONFIG
    options: dict[str, Any] = dict(
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level == "debug",
        log_config=log_config,
        http=NoDelayHttpToolsProtocol,
    )
    click.echo(
        f"nurture tracking server on http://{host}:{port} (public URL {app.config.tracking.base_url})"
        + (f", {workers} workers" if workers > 1 else "")
    )
    if workers == 1:
        engine = app.engine()
        web_app = create_app(app.config, engine=engine)
        _tune_process()
        # proxy_headers (uvicorn's default) takes the client address from X-Forwarded-For when the proxy is on
        # 127.0.0.1 (forwarded_allow_ips), which bot labels need.
        uvicorn.run(web_app, **options)
        return
    app.engine()  # fail here, once, on a database that is not migrated, not in every worker
    # uvicorn starts the workers as fresh processes (spawn) that build the app with worker_app() below: they
    # find the configuration, the database override and the log format in the environment.
    if app.config_path:
        os.environ["NURTURE_CONFIG"] = os.path.abspath(app.config_path)
    elif app.config.source and os.path.exists(str(app.config.source)):
        os.environ["NURTURE_CONFIG"] = os.path.abspath(str(app.config.source))
    if app.database_url:
        os.environ["NURTURE_DATABASE_URL"] = app.database_url
    if app.log_format:
        os.environ["NURTURE_LOG_FORMAT"] = app.log_format
    # Every worker counts its own hits: prometheus-client's multiprocess mode sums them from files in this
    # folder (a fresh one per start, so counters of an earlier run are not added).
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="nurture-metrics-")
    # A worker imports the whole app before it answers the supervisor's ping: on a busy host that takes more
    # than uvicorn's 5 s default, and a worker killed while starting is started again, and again.
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        options["timeout_worker_healthcheck"] = 60
    uvicorn.run("nurture.cli.serve:worker_app", factory=True, workers=workers, **options)


def _tune_process() -> None:
    # The event buffer's writer thread shares the GIL with the event loop; a 1 ms switch interval (default 5 ms)
    # lets the loop answer pixels between slices of a batch write (p99 latency, bench/track.py).
    sys.setswitchinterval(0.001)
    # Everything imported and built so far lives as long as the process: move it out of the cyclic garbage
    # collector's sight, so full collections stay short and do not stall the event loop (p99 latency).
    gc.freeze()


def worker_app() -> Any:
    """The app of one ``nurture serve --workers N`` worker process, configured from the environment that
    :func:`serve` set (NURTURE_CONFIG, NURTURE_DATABASE_URL, NURTURE_LOG_FORMAT)."""
    from nurture.web import create_app

    fmt = os.environ.get("NURTURE_LOG_FORMAT")
    if fmt in logs.FORMATS:
        logs.configure(fmt)
    worker = App(None, None)
    web_app = create_app(worker.config, engine=worker.engine())
    _tune_process()
    return web_app


COMMANDS = [serve]
