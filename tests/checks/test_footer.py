"""The footer check: what 特定電子メール法 and CAN-SPAM require, looked for in the HTML and the text part."""

from __future__ import annotations

import dataclasses
import re

import pytest
from identities import EN, JA, REPO, URLS

from nurture.checks.footer import footer_problems
from nurture.compose import RenderedMessage, Renderer, build_context
from nurture.core.config import Config, IdentityConfig
from nurture.plan.campaigns import load_campaign

SAMPLES = [("mfg-insights", "ja", JA), ("saas-ops-digest", "en", EN)]


def rendered_sample(name: str, identity: IdentityConfig) -> tuple[Config, RenderedMessage]:
    """The first item of a shipped campaign, rendered for a made-up prospect."""
    config = Config(identity=identity, root=REPO)
    campaign = load_campaign(REPO / "campaigns" / f"{name}.toml", config)
    item = campaign.content.items[0]
    context = build_context(config, campaign, item, {"name": "山田 太郎", "company": "山田精機"}, URLS)
    return config, Renderer(config.templates_dir).render(item, context)


@pytest.mark.parametrize("name,language,identity", SAMPLES)
def test_footer_problems_finds_each_missing_element(name, language, identity):
    config, out = rendered_sample(name, identity)
    assert footer_problems(out, config, language) == []

    def without(*parts: str) -> RenderedMessage:
        html, text = out.html, out.text
        for part in parts:
            assert part in html or part in text, part
            html, text = html.replace(part, ""), text.replace(part, "")
        return RenderedMessage(out.subject, html, text)

    cases = {
        "sender name": without(identity.organization),
        "postal address": without(identity.postal_address),
        "inquiry contact": without(identity.inquiry),
    }
    for label, mail in cases.items():
        problems = footer_problems(mail, config, language)
        assert any(label in p for p in problems), (label, problems)
        assert len(problems) == 2  # HTML part and text part
    # The opt-out statement without its link (HTML) and without its URL (text).
    anchor = re.search(r'<a href="https://news\.example\.com/u/TOKEN-U"[^>]*>(.*?)</a>', out.html)
    assert anchor is not None
    unlinked = RenderedMessage(
        out.subject,
        out.html.replace(anchor.group(0), anchor.group(1)),
        out.text.replace(f" ({URLS['unsubscribe']})", ""),
    )
    problems = footer_problems(unlinked, config, language)
    assert any("HTML part lacks an opt-out statement" in p for p in problems)
    assert any("text part lacks an opt-out statement" in p for p in problems)
    # Settings left empty are named.
    empty = dataclasses.replace(config, identity=IdentityConfig())
    problems = footer_problems(out, empty, language)
    for setting in ("organization", "postal_address", "inquiry"):
        assert any(f"[identity] {setting} is empty" in p for p in problems)


def test_hidden_text_does_not_count_and_wrapping_does_not_matter():
    config = Config(identity=EN, root=REPO)
    visible = (
        f"<p>{EN.organization}</p><p>100 Example Street,\n  Suite 400, Boston, MA 02110, USA</p>"
        f"<p>Contact: {EN.inquiry}</p><p>To stop receiving these mails, "
        f'<a href="{URLS["unsubscribe"]}">unsubscribe</a>.</p>'
    )
    text = (
        f"{EN.organization}\n{EN.postal_address}\nContact: {EN.inquiry}\n\n"
        f"To stop receiving these mails, unsubscribe ({URLS['unsubscribe']}).\n"
    )
    assert footer_problems(RenderedMessage("s", f"<body>{visible}</body>", text), config, "en") == []
    hidden = f'<body><div style="display:none">{visible}</div></body>'
    problems = footer_problems(RenderedMessage("s", hidden, text), config, "en")
    assert len(problems) == 4 and all(p.startswith("HTML part lacks") for p in problems), problems
