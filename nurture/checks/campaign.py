"""The campaign check: is every campaign file right, and may its mail leave?

For each campaign it loads and validates the TOML (segment, cadence, items), compiles every template, renders every
item for a sample prospect in the campaign's language (or a given prospect), and runs the footer check
(:func:`nurture.checks.footer.footer_problems`) and the information-only check
(:func:`nurture.checks.content.check_message`) on the result. It needs no database and no tracking secret: without
one, links in these renders are signed with :data:`PREVIEW_SECRET`, a placeholder that the tracking server will not
accept; with one, they are signed with it for delivery 0, so they open the real pages but count no open or click
(:func:`preview_note` says which).

``nurture check`` prints what :func:`run_check` finds; the sending engine runs :func:`check_campaign` on every
campaign before it sends anything and refuses one with errors (the compliance gate lives in the library, so a
script or a bench cannot go around it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy.dialects import postgresql, sqlite

from nurture.checks.content import MODEL_CATEGORY, check_message, template_words
from nurture.checks.footer import footer_problems
from nurture.checks.model import load_model
from nurture.checks.rules import RuleSet, rules_for
from nurture.compose import links
from nurture.compose.context import build_context
from nurture.compose.html_text import html_to_text
from nurture.compose.rendering import RenderedMessage, Renderer
from nurture.core import clock
from nurture.core.config import Config
from nurture.core.errors import ConfigError, NotFound, NurtureError
from nurture.plan.campaigns import (
    Campaign,
    CampaignFile,
    ContentItem,
    display_path,
    error_lines,
    lint_campaign,
    load_each,
)
from nurture.plan.segments import segment_select
from nurture.store.models import Prospect

#: Signs the links of previews and checks. Never a real secret: the server rejects these links.
PREVIEW_SECRET = "nurture-preview-placeholder-secret"
PREVIEW_NOTE = "links in previews are signed with a placeholder secret and do not work (no tracking secret needed)"
SIGNED_PREVIEW_NOTE = (
    "links in previews are signed with your [tracking] secret for no delivery: they open the real pages but "
    "count no open or click"
)


def uses_preview_secret(config: Config) -> bool:
    """Whether previews of ``config`` are signed with the placeholder (no usable tracking secret is set)."""
    return len(config.tracking.secret) < 16


def preview_note(config: Config) -> str:
    """What a check or preview says about its links: placeholder-signed, or signed with the configured secret."""
    return PREVIEW_NOTE if uses_preview_secret(config) else SIGNED_PREVIEW_NOTE


@dataclass
class Finding:
    """One result of ``nurture check``. ``kind``: config | template | render | footer | content | segment."""

    severity: str
    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    item: str | None = None
    phrase: str | None = None
    category: str | None = None
    why: str | None = None
    where: str | None = None
    rule: str | None = None
    score: float | None = None
    evidence: list[str] = field(default_factory=list)
    allowed: str | None = None


@dataclass
class CampaignReport:
    name: str
    file: str
    items: int = 0
    loaded: bool = True
    findings: list[Finding] = field(default_factory=list)
    item_keys: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)

    @property
    def allowed(self) -> int:
        return sum(f.severity == "allowed" for f in self.findings)

    @property
    def status(self) -> str:
        return "errors" if self.errors else "warnings" if self.warnings else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "status": self.status,
            "loaded": self.loaded,
            "items": self.items,
            "errors": self.errors,
            "warnings": self.warnings,
            "allowed": self.allowed,
            "findings": [dataclasses.asdict(f) for f in self.findings],
        }


# ------------------------------------------------------------------------------------------ sample data


_SAMPLES = {
    "ja": dict(
        email="sample@example.co.jp",
        name="山田 太郎",
        company="株式会社サンプル精機",
        title="製造部 部長",
        industry="製造業",
        owner="佐藤 花子",
    ),
    "en": dict(
        email="sample@example.com",
        name="Alex Morgan",
        company="Sample Manufacturing Inc.",
        title="Operations Manager",
        industry="manufacturing",
        owner="Jordan Lee",
    ),
}


def sample_prospect(campaign: Campaign, item: ContentItem | None = None) -> Prospect:
    """A made-up prospect in the campaign's language who could receive ``item`` (its first industry, else the
    segment's). Not attached to any database session."""
    values = dict(_SAMPLES.get(campaign.language, _SAMPLES["en"]))
    industries = (
        (item.industries if item else ())
        or campaign.segment.values("industry", "in")
        or campaign.segment.values("industry", "eq")
    )
    if industries:
        values["industry"] = industries[0]
    temperatures = campaign.segment.values("temperature", "in") or campaign.segment.values("temperature", "eq")
    return Prospect(
        id=0,
        temperature=(temperatures or ("warm",))[0],
        stage="MQL",
        rank="C",
        score=40.0,
        language=campaign.language,
        time_zone="",
        attributes={},
        next_action="",
        status="active",
        consent_basis="business_card",
        frequency_factor=1.0,
        **values,
    )


def preview_config(config: Config) -> Config:
    """``config`` as checks and previews sign links with: as it is when it has a tracking secret, else with the
    placeholder secret, so they never need one."""
    if not uses_preview_secret(config):
        return config
    return dataclasses.replace(config, tracking=dataclasses.replace(config.tracking, secret=PREVIEW_SECRET))


def render_item(
    config: Config, campaign: Campaign, item: ContentItem, prospect: Prospect, renderer: Renderer | None = None
) -> RenderedMessage:
    """Render ``item`` for ``prospect`` as a preview (links for delivery 0, see :func:`preview_config`)."""
    renderer = renderer or Renderer(config.templates_dir)
    signing = preview_config(config)
    urls = links.urls_for(signing, 0, prospect.id or 0)
    context = build_context(signing, campaign, item, prospect, urls)
    return renderer.render(item, context)


# ----------------------------------------------------------------------------------------------- check


def _config_findings(error: ConfigError, kind: str, item: str | None = None) -> list[Finding]:
    out = []
    for text in error_lines(error):
        file, line = None, None
        head = text.split(": ", 1)[0]
        if ":" in head and head.rsplit(":", 1)[1].isdigit():
            file, line = head.rsplit(":", 1)[0], int(head.rsplit(":", 1)[1])
        elif head.endswith((".toml", ".mjml", ".txt", ".html")):
            file = head
        out.append(Finding("error", kind, text, file=file, line=line, item=item))
    if error.hint:
        out[-1].message += f" (hint: {error.hint})"
    return out


def _config_name(config: Config) -> str:
    return "nurture.toml" if config.source == "(defaults)" else display_path(Path(config.source))


def _render_error(exc: Exception) -> str:
    if isinstance(exc, jinja2.TemplateSyntaxError) and exc.lineno:
        return f"{exc.filename or exc.name or 'template'}:{exc.lineno}: {exc.message}"
    return str(exc)


def check_campaign(
    config: Config, campaign: Campaign, report: CampaignReport, prospect: Prospect | None = None
) -> None:
    """Add to ``report`` what is wrong with ``campaign`` beyond its file: lint warnings, template compile
    errors, render errors, missing footer parts, sales language."""
    file = display_path(campaign.path)
    for text in lint_campaign(campaign):
        line = text.split(": ", 1)[0].rsplit(":", 1)[-1]
        report.findings.append(
            Finding("warning", "segment", text, file=file, line=int(line) if line.isdigit() else None)
        )
    today = clock.now().astimezone(campaign.cadence.zone).date()
    if campaign.cadence.end and campaign.cadence.end < today:
        report.findings.append(
            Finding(
                "warning",
                "config",
                f"{file}: the campaign ended on {campaign.cadence.end.isoformat()}: nurture send mails nothing for it",
                file=file,
                why='extend [cadence] end, or set status = "paused"',
            )
        )
    # The segment compiles to SQL for both databases we support (a programming error would surface here).
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        segment_select(campaign, clock.now()).compile(dialect=dialect)

    def item_error(item: ContentItem, kind: str, detail: str, where: str | None = None) -> None:
        report.findings.append(
            Finding(
                "error",
                kind,
                f'{file}:{item.line}: item "{item.key}": {detail}',
                file=file,
                line=item.line,
                item=item.key,
                where=where,
            )
        )

    renderer = Renderer(config.templates_dir)
    rules = rules_for(config)
    failed_templates: set[str] = set()
    for item in campaign.items:
        if item.template in failed_templates:
            item_error(item, "template", f"template {item.template} does not compile (see above)")
            continue
        try:
            renderer.compile(item.template)
        except ConfigError as exc:
            failed_templates.add(item.template)
            item_error(item, "template", str(exc), where=exc.message.split(": ", 1)[0])
            continue
        who = prospect or sample_prospect(campaign, item)
        try:
            rendered = render_item(config, campaign, item, who, renderer)
        except (NurtureError, jinja2.TemplateError) as exc:
            item_error(item, "render", f"does not render for {who.email}: {_render_error(exc)}")
            continue
        for problem in footer_problems(rendered, config, campaign.language):
            if "[identity]" in problem:  # a setting, the same for every item: say it once
                message = f"{file}: footer {problem} ({_config_name(config)})"
                if not any(f.message == message for f in report.findings):
                    report.findings.append(
                        Finding(
                            "error",
                            "footer",
                            message,
                            file=file,
                            why="特定電子メール法 / CAN-SPAM require it in every mail",
                        )
                    )
                continue
            report.findings.append(
                Finding(
                    "error",
                    "footer",
                    f'{file}:{item.line}: item "{item.key}": footer {problem}',
                    file=file,
                    line=item.line,
                    item=item.key,
                    why="特定電子メール法 / CAN-SPAM require it in every mail",
                )
            )
        allow = [a for a in campaign.allow if not getattr(a, "item", "") or a.item == item.key]
        for found in check_message(
            rendered,
            language=campaign.language,
            allow=allow,
            source=item.key,
            rules=rules,
            keep_allowed=True,
            template_text=_template_text(config, renderer, item),
        ):
            where = {"subject": "subject", "html": f"HTML part line {found.line}"}.get(found.part, "")
            where = where or (
                f"template line {found.line} (a branch not shown to the sample prospect)"
                if found.part == "template"
                else f"text line {found.line}"
            )
            label = "reads as a pitch" if found.category == MODEL_CATEGORY else found.category
            tail = f" [allowed: {found.allowed}]" if found.severity == "allowed" else ""
            report.findings.append(
                Finding(
                    found.severity,
                    "content",
                    f'{file}:{item.line}: item "{item.key}": {label} "{found.phrase}" ({where}): {found.why} '
                    f"({found.rule}){tail}",
                    file=file,
                    line=item.line,
                    item=item.key,
                    phrase=found.phrase,
                    category=found.category,
                    why=found.why,
                    where=where,
                    rule=found.rule,
                    score=found.score,
                    evidence=list(found.evidence),
                    allowed=found.allowed or None,
                )
            )
    _check_allowances(campaign, rules, report, file)


def _template_text(config: Config, renderer: Renderer, item: ContentItem) -> str:
    """The item's words in every branch of its template's conditionals (and its subject's): what a prospect
    other than the sample one could receive."""
    parts = [template_words(item.subject)]
    try:
        compiled = renderer.compile(item.template)
        parts.append(template_words(html_to_text(compiled.html_source)))
        if item.text_template:
            parts.append(template_words((config.templates_dir / item.text_template).read_text("utf-8")))
    except (OSError, UnicodeDecodeError, NurtureError):
        pass  # reported by the template check above
    return "\n\n".join(parts)


def _check_allowances(campaign: Campaign, rules: RuleSet, report: CampaignReport, file: str) -> None:
    """An [[allow]] naming a rule or an item that does not exist allows nothing: say so (a typo would
    otherwise look like a reviewed exception)."""
    known = {r.id for r in rules.rules} | {f"{lang}-model" for lang in load_model()}
    keys = {it.key for it in campaign.items}
    for a in campaign.allow:
        rule, item = getattr(a, "rule", ""), getattr(a, "item", "")
        if rule and rule not in known:
            report.findings.append(
                Finding("warning", "config", f'{file}: [[allow]] rule "{rule}" is not a known rule id', file=file)
            )
        if item and item not in keys:
            report.findings.append(
                Finding(
                    "warning", "config", f'{file}: [[allow]] item "{item}" is not an item of this campaign', file=file
                )
            )


def selected_campaigns(config: Config, names: tuple[str, ...]) -> list[CampaignFile]:
    """Each campaign file with its campaign or its error; ``names`` picks by campaign name or file stem."""
    out = load_each(config)
    if not names:
        return out
    chosen = [row for row in out if row[0].stem in names or (row[1] is not None and row[1].name in names)]
    known = {row[0].stem for row in chosen} | {row[1].name for row in chosen if row[1] is not None}
    missing = [n for n in names if n not in known]
    if missing:
        available = (
            ", ".join(sorted(row[1].name if row[1] else row[0].stem for row in out))
            or f"none (no *.toml in {display_path(config.campaigns_dir)})"
        )
        raise NotFound(f"no campaign named {', '.join(missing)}", hint=f"available: {available}")
    return chosen


def run_check(config: Config, names: tuple[str, ...] = (), prospect: Prospect | None = None) -> list[CampaignReport]:
    """Check the chosen campaigns (all by default); one report per file, duplicate names included."""
    reports: list[CampaignReport] = []
    seen: dict[str, str] = {}
    for path, campaign, error in selected_campaigns(config, names):
        file = display_path(path)
        if campaign is None:
            assert error is not None
            report = CampaignReport(path.stem, file, loaded=False)
            report.findings.extend(_config_findings(error, "config"))
            reports.append(report)
            continue
        report = CampaignReport(campaign.name, file, items=len(campaign.items))
        report.item_keys = [it.key for it in campaign.items]
        if campaign.name in seen:
            report.findings.append(
                Finding(
                    "error",
                    "config",
                    f'{file}: duplicate campaign name "{campaign.name}" '
                    f"(also in {seen[campaign.name]}); names must be unique",
                    file=file,
                )
            )
        seen.setdefault(campaign.name, file)
        check_campaign(config, campaign, report, prospect)
        reports.append(report)
    return reports
