"""Settings: command-line flag > environment > ``nurture.toml`` > default.

Where the file is found: ``--config PATH``, else ``$NURTURE_CONFIG``, else ``./nurture.toml``; with none of
them nurture runs on defaults (SQLite file ``nurture.db`` in the working directory, outbox sender).
Relative paths in the file are relative to the file's folder. Secrets may stay out of the file:

=============================  ==========================================
``NURTURE_DATABASE_URL``       overrides ``[database] url``
``NURTURE_SECRET``             overrides ``[tracking] secret`` (signs links and tokens)
``NURTURE_PREVIOUS_SECRETS``   overrides ``[tracking] previous_secrets`` (comma-separated: older secrets whose
                               links still work)
``NURTURE_SMTP_PASSWORD``      overrides ``[smtp] password``
``SENDGRID_API_KEY``           overrides ``[sendgrid] api_key``
``SENDGRID_WEBHOOK_PUBLIC_KEY`` overrides ``[sendgrid] webhook_public_key``
=============================  ==========================================

Every setting is documented in ``config.example.toml``; a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import os
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from nurture.core.errors import ConfigError
from nurture.core.tomlschema import Problems, TomlFile, bounded, build

DEFAULT_FILE = "nurture.toml"
_EPOCH = datetime(2026, 1, 1)  # any instant: CronSim needs one to parse
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///nurture.db"


@dataclass(frozen=True)
class IdentityConfig:
    """Who sends. 特定電子メール法 and CAN-SPAM require name, postal address and a contact in every mail."""

    organization: str = ""
    from_name: str = ""
    from_address: str = ""
    reply_to: str = ""
    postal_address: str = ""
    inquiry: str = ""
    website: str = ""
    unsubscribe_mailto: str = ""


@dataclass(frozen=True)
class DeliveryConfig:
    sender: Literal["outbox", "smtp", "sendgrid", "memory"] = "outbox"
    processes: int = bounded(1, 1, 64)
    record_batch: int = bounded(8, 1, 1000)
    lease_seconds: int = bounded(300, 10, 86400, "seconds")
    max_attempts: int = bounded(8, 1, 100)
    retry_base_seconds: float = bounded(60.0, 1, 86400, "seconds")
    error_budget: int = bounded(20, 1, 1_000_000)
    #: Refuse a real send (smtp, sendgrid) while the setup still holds example values (nurture.checks.preflight).
    preflight: bool = True

    def __post_init__(self) -> None:
        if self.lease_seconds < 10:
            raise ValueError("delivery.lease_seconds must be at least 10")
        if not 1 <= self.record_batch <= 1000:
            raise ValueError("delivery.record_batch must be between 1 and 1000")
        if self.processes < 1:
            raise ValueError("delivery.processes must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("delivery.max_attempts must be at least 1")


@dataclass(frozen=True)
class OutboxConfig:
    path: str = "outbox"


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = bounded(25, 1, 65535)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str = ""
    password: str = ""
    timeout: float = bounded(30.0, 0.1, 600, "seconds")
    messages_per_connection: int = bounded(100, 1, 100_000)
    helo: str = ""


@dataclass(frozen=True)
class SendgridConfig:
    api_key: str = ""
    host: str = "https://api.sendgrid.com"
    timeout: float = bounded(15.0, 0.1, 600, "seconds")
    sandbox: bool = False
    webhook_public_key: str = ""
    webhook_max_age_seconds: int = bounded(600, 30, 86400, "seconds")


@dataclass(frozen=True)
class DkimConfig:
    domain: str = ""
    selector: str = ""
    private_key_path: str = ""


@dataclass(frozen=True)
class CadenceConfig:
    """Defaults for every campaign; a campaign's own [cadence] may override interval and send window."""

    min_gap_days: float = bounded(10.0, 0, 365, "days")
    interval_days: float = bounded(14.0, 0, 3650, "days", above=True)
    time_zone: str = "Asia/Tokyo"
    send_days: list[str] = field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])
    send_hours: list[int] = field(default_factory=lambda: [9, 18])
    skip_japanese_holidays: bool = True
    company_holidays: list[str] = field(default_factory=lambda: ["12-29..01-03", "08-13..08-16"])
    #: How a prospect due in several campaigns gets them (one mail per min_gap_days either way):
    #: "round-robin" (the campaign that mailed them longest ago; priority breaks ties), "weights" (each campaign's
    #: share of their mails over the last year follows its ``weight``; priority breaks ties) or "priority" (the
    #: highest-priority campaign every time; a lower one waits until the higher one has nothing to send).
    share: Literal["round-robin", "weights", "priority"] = "round-robin"
    #: A prospect not mailed for this many times their interval (or never mailed this long after being added) while
    #: still selected is reported as silent, with the reason (nurture.plan.silence).
    silent_after_intervals: float = bounded(2.0, 1, 100, "intervals")

    def __post_init__(self) -> None:
        if self.silent_after_intervals < 1:
            raise ValueError("cadence.silent_after_intervals must be at least 1 (a number of intervals)")
        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f'cadence.time_zone "{self.time_zone}" is not a known time zone '
                '(use an IANA name such as "Asia/Tokyo" or "America/New_York")'
            ) from None
        bad = [d for d in self.send_days if d not in WEEKDAYS]
        if bad:
            raise ValueError(f"cadence.send_days: unknown day {bad[0]!r}; use {', '.join(WEEKDAYS)}")
        if len(self.send_hours) != 2 or not 0 <= self.send_hours[0] < self.send_hours[1] <= 24:
            raise ValueError("cadence.send_hours must be [start, end) hours like [9, 18]")
        if self.min_gap_days < 0 or self.interval_days <= 0:
            raise ValueError("cadence.min_gap_days must be >= 0 and cadence.interval_days > 0")


@dataclass(frozen=True)
class WorkspaceConfig:
    """Defaults for prospects who lack a value of their own."""

    #: The language of a prospect without one: only campaigns of this ``language`` select them.
    language: Literal["ja", "en"] = "ja"
    #: The zone of a prospect without one ("" = ``[cadence] time_zone``); never the campaign's zone.
    time_zone: str = ""

    def __post_init__(self) -> None:
        if self.time_zone:
            try:
                zoneinfo.ZoneInfo(self.time_zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f'workspace.time_zone "{self.time_zone}" is not a known time zone '
                    '(use an IANA name such as "Asia/Tokyo" or "America/New_York")'
                ) from None


@dataclass(frozen=True)
class ScheduleConfig:
    """When `nurture send` runs (cron, a systemd timer): declared here so that `nurture check` and
    `send --dry-run` can warn about send windows the runs never reach. Keep it the same as the real schedule."""

    #: A five-field cron expression, as in the crontab line (the README's runs every 15 minutes around the clock).
    cron: str = "*/15 * * * *"
    #: The zone the cron daemon reads the expression in ("" = the workspace's zone).
    time_zone: str = ""

    def __post_init__(self) -> None:
        from cronsim import CronSim, CronSimError  # imported here: only config loading and plan.schedule need it

        try:
            CronSim(self.cron, _EPOCH)
        except CronSimError as exc:
            raise ValueError(
                f'schedule.cron "{self.cron}" is not a cron expression ({exc}); '
                'write five fields like the crontab line, e.g. "*/15 * * * *"'
            ) from None
        if self.time_zone:
            try:
                zoneinfo.ZoneInfo(self.time_zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f'schedule.time_zone "{self.time_zone}" is not a known time zone') from None


@dataclass(frozen=True)
class WarmupConfig:
    """A new sending domain starts at ``start_per_day`` and grows by ``growth`` each day until the limits."""

    enabled: bool = False
    start_date: str = ""
    start_per_day: int = bounded(200, 1, 10_000_000)
    growth: float = bounded(1.5, 1, 10)


@dataclass(frozen=True)
class ThrottleConfig:
    per_second: float = bounded(20.0, 0, 100_000, "messages a second", above=True)
    per_hour: int = bounded(0, 0, 1_000_000_000)
    per_day: int = bounded(0, 0, 1_000_000_000)
    concurrency: int = bounded(2, 1, 256)
    domains: dict[str, float] = field(
        default_factory=lambda: {
            "gmail.com": 5.0,
            "docomo.ne.jp": 2.0,
            "ezweb.ne.jp": 2.0,
            "au.com": 2.0,
            "softbank.ne.jp": 2.0,
            "i.softbank.jp": 2.0,
        }
    )
    default_domain_per_second: float = bounded(5.0, 0, 100_000, "messages a second (0 = no limit)")
    warmup: WarmupConfig = field(default_factory=WarmupConfig)

    def __post_init__(self) -> None:
        if self.per_second <= 0:
            raise ValueError("throttle.per_second must be > 0")
        if self.concurrency < 1:
            raise ValueError("throttle.concurrency must be at least 1")
        bad = {d: r for d, r in self.domains.items() if not 0 <= r <= 100_000}
        if bad:
            domain, rate = next(iter(bad.items()))
            raise ValueError(
                f'[throttle] domains "{domain}" = {rate:g} is out of range: use 0 to 100000 messages a second '
                "(0 = no limit)"
            )


@dataclass(frozen=True)
class TrackingConfig:
    base_url: str = "http://127.0.0.1:8080"
    secret: str = ""
    open_pixel: bool = True
    click_tracking: bool = True
    honeypot_link: bool = True
    #: A source (user agent + network) caught as a machine makes its other hits for the same recipient within
    #: this many minutes machine too (nurture.track.botdetect ``caught_source``). 0 turns the rule off.
    source_window_minutes: float = bounded(10.0, 0, 1440, "minutes")
    #: Secrets used before ``secret``: links signed with them still verify (rotation); new links use ``secret``.
    previous_secrets: list[str] = field(default_factory=list)
    #: Largest provider webhook body read; a bigger one is answered 413 before it is read.
    webhook_max_bytes: int = bounded(4_000_000, 1024, 1_000_000_000, "bytes")

    def __post_init__(self) -> None:
        if not 0 <= self.source_window_minutes <= 1440:
            raise ValueError("tracking.source_window_minutes must be between 0 and 1440 (a day)")
        if not 1024 <= self.webhook_max_bytes <= 200_000_000:
            raise ValueError("tracking.webhook_max_bytes must be between 1024 and 200000000 (bytes)")


@dataclass(frozen=True)
class ContentConfig:
    """The information-only check: extra rule files (format in nurture/checks/rules/README.md), added to the built-in
    Japanese and English rules."""

    rules: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SubscribeConfig:
    """The sign-up form (``/subscribe`` on ``nurture serve``, ``nurture form snippet``): double opt-in, topics, consent
    wording, and the limits against abuse (nurture.web.subscribe)."""

    #: Off by default: the page exists once the operator has written the consent wording they want to prove.
    enabled: bool = False
    #: Recorded as the consent source of sign-ups on the hosted page (``form:<form_id>``).
    form_id: str = "site"
    #: The choices of the industry field (empty: no industry field).
    industries: list[str] = field(default_factory=list)
    #: The consent checkbox's exact wording per language; stored with every consent record.
    consent_wording: dict[str, str] = field(
        default_factory=lambda: {
            "ja": "上記のメールアドレスに、ニュースレターと関連するご案内をお送りすることに同意します。"
            "配信はいつでも停止できます。",
            "en": "I agree to receive the newsletter and related information at the address above. "
            "I can unsubscribe at any time.",
        }
    )
    #: Origins of the company's own sites allowed to post the embedded form (CORS, Origin check), e.g.
    #: ["https://www.example.co.jp"]; the tracking server's own origin is always allowed.
    allowed_origins: list[str] = field(default_factory=list)
    #: The confirmation link works this long.
    confirm_hours: float = bounded(48.0, 0, 720, "hours", above=True)
    #: A repeated sign-up re-sends the confirmation mail at most once per this many minutes (per address).
    resend_minutes: float = bounded(15.0, 0, 1440, "minutes")
    #: Sign-ups accepted per client IP per hour.
    per_ip_per_hour: int = bounded(20, 1, 100000)
    #: Confirmation mails per minute in all (a flood of sign-ups cannot turn the server into a mail cannon).
    mails_per_minute: int = bounded(30, 1, 100000)
    #: A form sent back faster than this after it was shown is a bot's (answered like a success, nothing kept).
    min_fill_seconds: float = bounded(3.0, 0, 600, "seconds")
    #: A form token older than this is refused (the page is shown again with a fresh one).
    max_form_age_hours: float = bounded(24.0, 0, 720, "hours", above=True)

    def __post_init__(self) -> None:
        if self.confirm_hours <= 0 or self.resend_minutes < 0 or self.min_fill_seconds < 0:
            raise ValueError("subscribe.confirm_hours must be > 0, resend_minutes and min_fill_seconds >= 0")
        if self.per_ip_per_hour < 1 or self.mails_per_minute < 1:
            raise ValueError("subscribe.per_ip_per_hour and subscribe.mails_per_minute must be at least 1")
        for origin in self.allowed_origins:
            if not origin.startswith(("https://", "http://")) or origin.rstrip("/").count("/") != 2:
                raise ValueError(
                    f'subscribe.allowed_origins: "{origin}" is not an origin like "https://www.example.jp"'
                )


@dataclass(frozen=True)
class PostalConfig:
    """The postal newsletter (``channel = "postal"`` campaigns, ``nurture postal``)."""

    interval_days: float = bounded(90.0, 7, 730, "days")
    label_layout: str = "a4-12"
    csv_encoding: Literal["utf-8-sig", "cp932"] = "utf-8-sig"
    email_optout_stops_post: bool = True
    font_family: str = "Noto Sans CJK JP"


@dataclass(frozen=True)
class PathsConfig:
    campaigns: str = "campaigns"
    templates: str = "templates"


@dataclass(frozen=True)
class HandoffConfig:
    """Telling sales about a handed-over prospect (:mod:`nurture.notify`).

    ``prospects.owner`` may hold an e-mail address (used as it is) or a name looked up in ``owners``; a prospect
    without an owner, or whose owner has no address, goes to ``default_owner``. ``languages`` gives an owner's
    language (key: the owner as written in the prospect list, or the address), else ``language``.
    """

    mail: bool = True
    default_owner: str = ""
    owners: dict[str, str] = field(default_factory=dict)
    languages: dict[str, str] = field(default_factory=dict)
    language: Literal["ja", "en"] = "ja"
    webhook_url: str = ""
    webhook_format: Literal["json", "slack"] = "json"
    webhook_timeout: float = bounded(10.0, 0, 300, "seconds", above=True)
    ack_timeout_minutes: float = bounded(60.0, 0, 10080, "minutes", above=True)
    escalate_to: str = ""
    escalate_webhook_url: str = ""
    retry_base_seconds: float = bounded(30.0, 1, 86400, "seconds")
    retry_max_seconds: float = bounded(3600.0, 1, 604800, "seconds")
    interval_seconds: float = bounded(15.0, 1, 3600, "seconds")

    def __post_init__(self) -> None:
        bad = [k for k, v in self.languages.items() if v not in ("ja", "en")]
        if bad:
            raise ValueError(f'handoff.languages: "{bad[0]}" must be "ja" or "en"')
        for name, url in (("webhook_url", self.webhook_url), ("escalate_webhook_url", self.escalate_webhook_url)):
            if url and not url.startswith(("https://", "http://")):
                raise ValueError(f"handoff.{name} must be an http(s) URL, not {url!r}")
        if self.ack_timeout_minutes <= 0 or self.retry_base_seconds <= 0 or self.interval_seconds <= 0:
            raise ValueError("handoff.ack_timeout_minutes, retry_base_seconds and interval_seconds must be > 0")
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("handoff.retry_max_seconds must be >= handoff.retry_base_seconds")
        if self.webhook_timeout <= 0:
            raise ValueError("handoff.webhook_timeout must be > 0")


@dataclass(frozen=True)
class DigestConfig:
    """The weekly digest each owner gets (``nurture digest``, :mod:`nurture.notify.digest`)."""

    days: int = bounded(7, 1, 366, "days")
    no_contact_days: int = bounded(30, 1, 3650, "days")
    max_rows: int = bounded(50, 1, 10000)

    def __post_init__(self) -> None:
        if self.days < 1 or self.no_contact_days < 1 or self.max_rows < 1:
            raise ValueError("digest.days, digest.no_contact_days and digest.max_rows must be at least 1")


@dataclass(frozen=True)
class Config:
    """The whole configuration. ``root`` is the folder relative paths are resolved against."""

    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    sendgrid: SendgridConfig = field(default_factory=SendgridConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    cadence: CadenceConfig = field(default_factory=CadenceConfig)
    workspace: WorkspaceConfig = field(default_factory=WorkspaceConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    subscribe: SubscribeConfig = field(default_factory=SubscribeConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    postal: PostalConfig = field(default_factory=PostalConfig)
    handoff: HandoffConfig = field(default_factory=HandoffConfig)
    digest: DigestConfig = field(default_factory=DigestConfig)
    root: Path = field(default=Path("."), metadata={"toml": "__root__"})
    source: str = field(default="(defaults)", metadata={"toml": "__source__"})

    def resolve(self, relative: str) -> Path:
        """A path from the config, resolved against the config file's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def database_url(self) -> str:
        url = self.database.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
            return "sqlite:///" + str(self.resolve(url[len("sqlite:///") :]))
        return url

    @property
    def default_time_zone(self) -> str:
        """The zone of prospects without one: ``[workspace] time_zone``, else ``[cadence] time_zone``."""
        return self.workspace.time_zone or self.cadence.time_zone

    @property
    def schedule_time_zone(self) -> str:
        """The zone ``[schedule] cron`` is read in."""
        return self.schedule.time_zone or self.default_time_zone

    @property
    def campaigns_dir(self) -> Path:
        return self.resolve(self.paths.campaigns)

    @property
    def templates_dir(self) -> Path:
        return self.resolve(self.paths.templates)

    def tracking_secret(self) -> bytes:
        """The signing key for links and tokens; an error telling how to set it if there is none."""
        if len(self.tracking.secret) < 16:
            raise ConfigError(
                f"{self.source}: [tracking] secret is not set (or shorter than 16 characters)",
                hint='set NURTURE_SECRET in the environment, e.g. export NURTURE_SECRET="$(python -c '
                "'import secrets; print(secrets.token_urlsafe(32))')\"",
            )
        return self.tracking.secret.encode()

    def previous_secrets(self) -> tuple[bytes, ...]:
        """The older signing keys that still verify (``[tracking] previous_secrets``, ``NURTURE_PREVIOUS_SECRETS``),
        in the order given, without blanks and without the current secret."""
        current = self.tracking.secret.strip()
        return tuple(s.strip().encode() for s in self.tracking.previous_secrets if s.strip() and s.strip() != current)


#: Settings that were removed, and what to do instead (said at their line, instead of "unknown key").
REMOVED = {
    ("smtp", "connections"): "nothing read it. Parallel SMTP connections are [throttle] concurrency per "
    "[delivery] processes (each sending thread keeps its own connection); delete the line",
}

_ENV = {
    ("database", "url"): "NURTURE_DATABASE_URL",
    ("tracking", "secret"): "NURTURE_SECRET",
    ("smtp", "password"): "NURTURE_SMTP_PASSWORD",
    ("sendgrid", "api_key"): "SENDGRID_API_KEY",
    ("sendgrid", "webhook_public_key"): "SENDGRID_WEBHOOK_PUBLIC_KEY",
}


def _check_domain_rates(table: dict, problems: Problems) -> None:
    """[throttle] domains: each rate 0 (no limit) to 100000 a second, reported at the line of the table (a bad
    entry is dropped so that ThrottleConfig does not report it a second time)."""
    domains = table.get("throttle", {}).get("domains") if isinstance(table.get("throttle"), dict) else None
    if not isinstance(domains, dict):
        return
    for domain, rate in list(domains.items()):
        if isinstance(rate, int | float) and not isinstance(rate, bool) and not 0 <= rate <= 100_000:
            problems.add(
                ("throttle", "domains", domain),
                f'[throttle] domains "{domain}" = {rate} is out of range: use 0 to 100000 messages a second '
                "(0 = no limit)",
            )
            del domains[domain]


def find_config_file(explicit: str | os.PathLike | None = None) -> Path | None:
    """The config file to read: explicit path, $NURTURE_CONFIG, ./nurture.toml, or None."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("NURTURE_CONFIG")
    if env:
        return Path(env)
    local = Path.cwd() / DEFAULT_FILE
    return local if local.exists() else None


def load(explicit: str | os.PathLike | None = None, *, database_url: str | None = None) -> Config:
    """Read and check the configuration. Raises ConfigError naming the key and line of every problem."""
    path = find_config_file(explicit)
    table: dict = {}
    source: TomlFile | None = None
    if path is not None:
        if not path.exists():
            raise ConfigError(
                f"{path}: config file not found",
                hint="create it from config.example.toml, or run `nurture demo` for a sample",
            )
        source = TomlFile(path)
        table = source.data
    problems = Problems(source)
    for key in ("__root__", "__source__"):
        table.pop(key, None)
    for (section, key), why in REMOVED.items():
        if isinstance(table.get(section), dict) and key in table[section]:
            problems.add((section, key), f"[{section}] {key} was removed: {why}")
            del table[section][key]
    _check_domain_rates(table, problems)
    config = build(Config, table, (), problems)
    problems.raise_if_any()
    overrides: dict[str, dict[str, str]] = {}
    for (section, key), env in _ENV.items():
        if os.environ.get(env):
            overrides.setdefault(section, {})[key] = os.environ[env]
    if database_url:
        overrides.setdefault("database", {})["url"] = database_url
    previous: dict[str, list[str]] = {}
    if os.environ.get("NURTURE_PREVIOUS_SECRETS", "").strip():
        previous["previous_secrets"] = [s for s in os.environ["NURTURE_PREVIOUS_SECRETS"].split(",") if s.strip()]
    changes: dict = {name: dataclasses.replace(getattr(config, name), **values) for name, values in overrides.items()}
    if previous:
        changes["tracking"] = dataclasses.replace(changes.get("tracking", config.tracking), **previous)
    root = path.parent.resolve() if path else Path.cwd()
    return dataclasses.replace(config, root=root, source=str(path) if path else "(defaults)", **changes)
