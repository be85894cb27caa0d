"""Explanations of score changes in the prospect's language (``ja`` or English), and the same facts structured
for reports. Pure functions; the caller gives the counted events and the subjects of their mails.

``C→B: 2 human clicks on "物流2024年問題" (+12), seminar attended (+20); 7 machine opens ignored``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nurture.score.model import Counted

_EN_NOUN = {
    "opened": ("open", "opens"),
    "clicked": ("click", "clicks"),
    "replied": ("reply", "replies"),
    "seminar_attended": ("seminar attended", "seminars attended"),
    "document_downloaded": ("document downloaded", "documents downloaded"),
    "met": ("meeting", "meetings"),
    "signed_up": ("sign-up", "sign-ups"),
    "inquired": ("inquiry", "inquiries"),
    "unsubscribed": ("unsubscribe", "unsubscribes"),
    "complained": ("spam complaint", "spam complaints"),
}
_JA_NOUN = {
    "opened": "開封",
    "clicked": "クリック",
    "replied": "返信",
    "seminar_attended": "セミナー参加",
    "document_downloaded": "資料ダウンロード",
    "met": "面談",
    "signed_up": "登録",
    "inquired": "問い合わせ",
    "unsubscribed": "配信停止",
    "complained": "迷惑メール報告",
}
_EN_LABEL = {"human": "human ", "machine": "machine ", "unknown": "unverified ", "": ""}
_JA_LABEL = {"human": "人による", "machine": "機械による", "unknown": "判定不明の", "": ""}
_EN_WHY = {
    "machine": "ignored",
    "weight": "ignored",
    "cap": "over the cap, ignored",
    "per_mail": "repeated on one mail, ignored",
    "click_counted": "already counted as clicks",
}
_JA_WHY = {
    "machine": "は無視",
    "weight": "は無視",
    "cap": "は上限超過で無視",
    "per_mail": "は同じメールでの重複のため無視",
    "click_counted": "はクリックで計上済み",
}


def _pts(value: float) -> str:
    text = f"{value:+.1f}".rstrip("0").rstrip(".")
    return text if text not in ("+0", "-0") else "±0"


def _en_noun(kind: str, n: int) -> str:
    one, many = _EN_NOUN.get(kind, (kind, kind))
    return one if n == 1 else many


def describe(
    counted: Sequence[Counted],
    subjects: Mapping[int, str],
    language: str,
) -> tuple[list[str], list[str], dict[str, Any]]:
    """(phrases of counted events, phrases of ignored events, details) for ``counted`` (the events that moved
    the score). Counted events are grouped by type, label and mail (subject, else item key)."""
    ja = language.lower().startswith("ja")
    groups: dict[tuple[str, str, str], list[Counted]] = {}
    ignored: dict[tuple[str, str, str], int] = {}
    counts: dict[str, int] = {}
    points: dict[str, float] = {}
    items: dict[str, dict[str, str]] = {}
    for c in counted:
        e = c.event
        counts[f"{e.type}:{c.label or '-'}"] = counts.get(f"{e.type}:{c.label or '-'}", 0) + 1
        if c.why == "counted":
            title = subjects.get(e.delivery_id or 0) or e.item_key
            groups.setdefault((e.type, c.label, title), []).append(c)
            points[e.type] = round(points.get(e.type, 0.0) + c.points, 6)
            if e.campaign or e.item_key:
                items.setdefault(
                    f"{e.campaign}/{e.item_key}",
                    {"campaign": e.campaign, "item_key": e.item_key, "subject": subjects.get(e.delivery_id or 0, "")},
                )
        else:
            key = (e.type, c.label, c.why)
            ignored[key] = ignored.get(key, 0) + 1
    said: list[str] = []
    for (kind, label, title), cs in groups.items():
        n, total = len(cs), sum(c.points for c in cs)
        if ja:
            where = f"「{title}」の" if title else ""
            count = f" {n} 回" if n > 1 else ""
            said.append(f"{_JA_LABEL[label]}{where}{_JA_NOUN.get(kind, kind)}{count} ({_pts(total)})")
        else:
            where = f' on "{title}"' if title else ""
            count = f"{n} " if n > 1 else ""
            said.append(f"{count}{_EN_LABEL[label]}{_en_noun(kind, n)}{where} ({_pts(total)})")
    skipped: list[str] = []
    for (kind, label, why), n in ignored.items():
        if ja:
            skipped.append(f"{_JA_LABEL[label]}{_JA_NOUN.get(kind, kind)} {n} 件{_JA_WHY[why]}")
        else:
            skipped.append(f"{n} {_EN_LABEL[label]}{_en_noun(kind, n)} {_EN_WHY[why]}")
    details = {"counts": counts, "points": points, "items": list(items.values())}
    return said, skipped, details


def sentence(
    arrow: str,
    said: Sequence[str],
    skipped: Sequence[str],
    language: str,
    *,
    cause: str,
    score_before: float,
    score_after: float,
    colleagues: float = 0.0,
    version: str = "",
    below: tuple[str, float, str, float] | None = None,
) -> str:
    """One line: ``arrow`` (``C→B``) then why. ``cause`` decay/rules/relabel adds its own words.

    ``below``: (score name, its value, the lowest level it no longer reaches, that level's threshold) for a move
    down that the events did not cause, e.g. a temperature typed into the spreadsheet meeting its first scoring:
    ``warm→cold`` after a human open reads as nonsense unless it first says the engagement is below warm's bar."""
    ja = language.lower().startswith("ja")
    parts = list(said)
    if below is not None:
        name, value, level, threshold = below
        label = {"engagement": "エンゲージメント", "total": "合計スコア"}.get(name, name) if ja else name
        parts.insert(
            0,
            f"{label} {value:.1f} が {level} の基準 {threshold:g} 未満"
            if ja
            else f"{label} {value:.1f} is below the {threshold:g} that {level} needs",
        )
    if colleagues:
        who = "同じ会社の反応した担当者" if ja else "engaged colleagues at the company"
        parts.append(f"{who} ({_pts(colleagues)})")
    if cause == "decay" or (not parts and not skipped and cause != "rules"):
        parts.append(
            f"時間経過による減衰 (スコア {score_before:.1f} → {score_after:.1f})"
            if ja
            else f"decay over time (score {score_before:.1f} → {score_after:.1f})"
        )
    elif cause == "rules":
        parts.append(
            f"ルール {version} で再計算 (スコア {score_before:.1f} → {score_after:.1f})"
            if ja
            else f"recomputed with rules {version} (score {score_before:.1f} → {score_after:.1f})"
        )
    elif cause == "relabel":
        parts.insert(0, "ボット判定の見直し" if ja else "events relabelled")
    if not parts:
        # Nothing gave points (only ignored events): the field moved because it is now derived from the score,
        # e.g. a temperature typed into the spreadsheet meeting the first scoring. Say that, never an empty reason.
        parts.append(
            f"スコア {score_before:.1f} → {score_after:.1f}（最近の人による反応から判定）"
            if ja
            else f"score {score_before:.1f} → {score_after:.1f} (derived from recent human engagement)"
        )
    sep = "、" if ja else ", "
    text = f"{arrow}: " + sep.join(parts)
    if skipped:
        text += ("。" if ja else "; ") + sep.join(skipped)
    return text
