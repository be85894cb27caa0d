"""The production files in deploy/ and the Dockerfile: they parse, and every nurture command they run is a
valid command line of this version (a renamed option would otherwise surface only on a production host)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import warnings
from pathlib import Path

import click
import pytest
import yaml

from nurture.cli.main import main

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def parses(args: list[str]) -> None:
    """Parse ``nurture ARGS`` as the CLI would, without running it; raises click's usage errors."""
    ctx = main.make_context("nurture", list(args))
    with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 8.1 still needs it
        warnings.simplefilter("ignore", DeprecationWarning)
        name, command, rest = main.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
    assert command is not None, name
    command.make_context(name, rest, parent=ctx)


def test_compose_runs_postgres_init_serve_and_senders():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"db", "init", "serve", "send"}
    assert services["db"]["image"].startswith("postgres:") and "healthcheck" in services["db"]
    for name in ("init", "serve", "send"):
        service = services[name]
        assert service["build"]["dockerfile"] == "Dockerfile" and (DEPLOY / service["build"]["context"]).is_dir()
        assert service["environment"]["NURTURE_DATABASE_URL"].startswith("postgresql+psycopg://")
    parses(services["init"]["command"])
    parses(services["serve"]["command"])
    loop = services["send"]["command"][-1]
    parses(shlex.split(re.search(r"do (nurture [^;]+);", loop).group(1))[1:])
    assert services["serve"]["ports"] == ["127.0.0.1:8080:8080"]  # the proxy is the only way in
    assert services["serve"]["depends_on"]["init"]["condition"] == "service_completed_successfully"


def test_dockerfile_is_slim_non_root_with_postgres_and_a_health_check():
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert '[postgres]"' in text and re.search(r"^USER nurture$", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1))
    assert entry == ["nurture"]
    parses(cmd)
    for copied in re.findall(r"^COPY (\S+)", text, re.M):
        assert (REPO / copied).exists(), copied


def test_systemd_units_run_valid_commands():
    units = sorted((DEPLOY / "systemd").iterdir())
    assert {u.name for u in units} == {"nurture-serve.service", "nurture-send@.service", "nurture-send@.timer"}
    for unit in units:
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart="))
                assert argv[0].endswith("/nurture")
                parses(argv[1:])
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the units were parsed for their commands only")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(u) for u in units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and "is not executable" not in line and "/opt/nurture" not in line
    ]
    assert not problems, result.stderr


def test_proxies_keep_metrics_and_health_off_the_internet():
    caddy = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    nginx = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    assert "@internal path /metrics /healthz" in caddy and "reverse_proxy 127.0.0.1:8080" in caddy
    assert "location = /metrics { return 404; }" in nginx and "proxy_pass http://nurture;" in nginx
    assert nginx.count("{") == nginx.count("}") and caddy.count("{") == caddy.count("}")


def test_parses_refuses_a_bad_option():
    with pytest.raises(click.UsageError):
        parses(["serve", "--no-such-option"])
