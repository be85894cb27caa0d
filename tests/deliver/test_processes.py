"""Forked sender processes ([delivery] processes > 1): what a failing child leaves for the parent to raise."""

from __future__ import annotations

import logging

import pytest
from send_workspace import add_prospects, deliveries, edit, send_api

from nurture.core.errors import SenderConfigError
from nurture.deliver import SenderProcessError, worker
from nurture.deliver.senders.smtp import SmtpSender


@pytest.fixture
def two_processes(ws):
    edit(ws / "nurture.toml", 'sender = "smtp"', 'sender = "smtp"\nprocesses = 2')
    add_prospects(ws, [f"p{i}@example.com,P{i},Co,製造業,warm,opt_in" for i in range(6)])
    return ws


def test_a_bug_in_a_sender_process_keeps_its_traceback(two_processes, smtp_server, monkeypatch, caplog):
    """Not a user's mistake but a bug: the child's traceback reaches the parent, in its log and in the error it
    raises, instead of a one-line message without a trace of where it happened."""

    def exploding_load(*args, **kw):
        raise RuntimeError("the template engine exploded")

    # A bug outside one mail's handling (one mail's failures, even a bug's, stay with that mail: test_isolation)
    monkeypatch.setattr(worker.claims, "load_claimed", exploding_load)  # inherited by the forked children
    with (
        caplog.at_level(logging.ERROR, logger="nurture.deliver.processes"),
        pytest.raises(SenderProcessError, match="RuntimeError: the template engine exploded") as err,
    ):
        send_api(two_processes)
    assert "Traceback (most recent call last)" in err.value.remote_traceback
    assert "in exploding_load" in err.value.remote_traceback  # the child's own frames
    assert "in exploding_load" in str(err.value)  # a crash report of the parent shows them too
    logged = [r.getMessage() for r in caplog.records if r.name == "nurture.deliver.processes"]
    assert any("in exploding_load" in message and "RuntimeError" in message for message in logged)
    assert smtp_server.messages == [] and {d.state for d in deliveries(two_processes)} == {"pending"}


def test_a_users_mistake_in_a_sender_process_stays_a_plain_message(two_processes, smtp_server, monkeypatch, caplog):
    """A NurtureError from a child (here a refused login) is raised in the parent as it is, hint included, with
    no traceback logged: it is the user's to fix, not a bug."""

    def refused(self, msg):
        raise SenderConfigError("[smtp] 127.0.0.1 refused the login", hint="check NURTURE_SMTP_PASSWORD", code=535)

    monkeypatch.setattr(SmtpSender, "send", refused)
    with caplog.at_level(logging.ERROR), pytest.raises(SenderConfigError, match="refused the login") as err:
        send_api(two_processes)
    assert err.value.hint == "check NURTURE_SMTP_PASSWORD" and err.value.code == 535
    assert "Traceback" not in caplog.text
    assert {d.state for d in deliveries(two_processes)} == {"pending"}
