"""Checks: may this campaign's mail leave? No database and no mail server (an import-linter contract keeps
``nurture.store.db`` and the senders out); pure functions over files and rendered mails.

Owns:

- :mod:`~nurture.checks.campaign`: the campaign check (:func:`check_campaign`, :func:`run_check`,
  :class:`CampaignReport`) that ``nurture check`` prints and the sending engine runs before it sends;
- :mod:`~nurture.checks.footer`: what 特定電子メール法 and CAN-SPAM require in every mail
  (:func:`footer_problems`);
- :mod:`~nurture.checks.content`: the information-only check (:func:`check_text`, :func:`check_message`);
- :mod:`~nurture.checks.rules`: its rule files (``rules/*.toml``), compiled and self-tested at load
  (:func:`load_rules`, :func:`rules_for`); :mod:`~nurture.checks.prefilter`: the literals that let a rule skip
  a text.

May import (layers in pyproject.toml): ``compose``, ``plan``, ``people``, ``score``, ``track``, ``store`` (not
``store.db``) and ``core``.
"""

from nurture.checks.campaign import (
    PREVIEW_NOTE,
    PREVIEW_SECRET,
    CampaignReport,
    check_campaign,
    render_item,
    run_check,
    sample_prospect,
    selected_campaigns,
)
from nurture.checks.content import check_message, check_text
from nurture.checks.footer import OPT_OUT_WORDS, footer_problems
from nurture.checks.rules import CATEGORIES, RuleSet, load_rules, rules_for

__all__ = [
    "CATEGORIES",
    "OPT_OUT_WORDS",
    "PREVIEW_NOTE",
    "PREVIEW_SECRET",
    "CampaignReport",
    "RuleSet",
    "check_campaign",
    "check_message",
    "check_text",
    "footer_problems",
    "load_rules",
    "render_item",
    "rules_for",
    "run_check",
    "sample_prospect",
    "selected_campaigns",
]
