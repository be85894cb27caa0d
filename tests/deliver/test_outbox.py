"""OutboxSender: atomic .eml files named by delivery id, campaign and item; a retry overwrites, never duplicates."""

from __future__ import annotations

import email
import email.policy
import os

import pytest

from nurture.compose.message import OutgoingMessage
from nurture.core import config as config_mod
from nurture.core.errors import TemporarySendError
from nurture.deliver.senders import make_sender
from nurture.deliver.senders.outbox import OutboxSender


def make(i: int = 7, subject: str = "今月のトピックス", item_key: str = "mfg-01") -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=i,
        campaign="mfg",
        item_key=item_key,
        to_address="a@example.com",
        from_address="n@example.jp",
        subject=subject,
        html="<p>本文</p>",
        text="本文",
        list_unsubscribe={
            "List-Unsubscribe": "<https://x.example/u>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def test_default_sender_is_the_outbox_under_the_config_folder(tmp_path):
    (tmp_path / "nurture.toml").write_text("", encoding="utf-8")
    sender = make_sender(config_mod.load(tmp_path / "nurture.toml"))
    assert isinstance(sender, OutboxSender) and sender.name == "outbox"
    assert sender.folder == tmp_path / "outbox"
    result = sender.send(make())
    assert result.provider_message_id == "7-mfg-mfg-01.eml"
    data = (tmp_path / "outbox" / "7-mfg-mfg-01.eml").read_bytes()
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"] == "今月のトピックス" and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert result.detail == msg["Message-ID"]


def test_retry_overwrites_instead_of_duplicating(tmp_path):
    sender = OutboxSender(tmp_path)
    sender.send(make(subject="first"))
    sender.send(make(subject="second"))
    sender.send(make(8))
    assert sorted(os.listdir(tmp_path)) == ["7-mfg-mfg-01.eml", "8-mfg-mfg-01.eml"]  # no temp files left behind either
    assert (
        email.message_from_bytes((tmp_path / "7-mfg-mfg-01.eml").read_bytes(), policy=email.policy.default)["Subject"]
        == "second"
    )


def test_write_failure_is_temporary_and_leaves_no_partial_file(tmp_path):
    sender = OutboxSender(tmp_path)
    (tmp_path / "7-mfg-mfg-01.eml").mkdir()  # os.replace onto a directory fails
    with pytest.raises(TemporarySendError, match=r"7-mfg-mfg-01\.eml"):
        sender.send(make())
    assert sorted(os.listdir(tmp_path)) == ["7-mfg-mfg-01.eml"]
    assert (tmp_path / "7-mfg-mfg-01.eml").is_dir()


def test_unknown_sender_name_is_a_config_error(tmp_path):
    import dataclasses

    from nurture.core.errors import ConfigError

    cfg = config_mod.Config()
    bad = dataclasses.replace(cfg, delivery=dataclasses.replace(cfg.delivery, sender="pigeon"))
    with pytest.raises(ConfigError, match="pigeon"):
        make_sender(bad)


def test_file_names_say_campaign_and_item_in_safe_characters(tmp_path):
    sender = OutboxSender(tmp_path)
    sender.send(make(9, item_key="../秋号 v2"))
    sender.send(make(10, item_key=""))
    assert sorted(os.listdir(tmp_path)) == ["10-mfg.eml", "9-mfg-_v2.eml"]


def test_mails_of_no_delivery_never_replace_each_other(tmp_path):
    """The /stop and /subscribe confirmations have no delivery (id 0): each keeps its own file, named by its
    Message-ID, where they used to overwrite one another."""
    sender = OutboxSender(tmp_path, fsync=False)
    for n in range(3):
        msg = OutgoingMessage(
            delivery_id=0,
            campaign="unsubscribe-confirmation",
            to_address=f"p{n}@example.com",
            from_address="n@example.jp",
            subject="配信停止の確認",
            html="<p>本文</p>",
            text="本文",
            message_id=f"<nurture.stop.{n:016x}@example.jp>",
        )
        sender.send(msg)
    names = sorted(p.name for p in tmp_path.glob("*.eml"))
    assert len(names) == 3 and names[0] == "0-unsubscribe-confirmation-nurture.stop.0000000000000000.eml"
