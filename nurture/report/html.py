"""The HTML report: one self-contained page (inline CSS, charts as inline SVG drawn by pygal, no script, no
external asset), in Japanese or English, laid out for a screen and for A4 paper (``@page``).

Only :class:`~nurture.report.model.Report` goes in; nothing is queried here. Column names are translated from
:data:`LABELS`; values are escaped.
"""

from __future__ import annotations

import html
import math
import re
from datetime import datetime
from typing import Any

import pygal
from pygal.style import Style

from nurture import __version__
from nurture.report.model import Chart, Report, Section
from nurture.report.render import cell, rate_text

_STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#333",
    foreground_strong="#111",
    foreground_subtle="#999",
    opacity=".85",
    opacity_hover=".95",
    colors=("#1f6feb", "#d29922", "#8b949e", "#2da44e", "#cf222e", "#8250df", "#0a7ea4", "#bf3989"),
    font_family="'Noto Sans CJK JP','Noto Sans JP','Hiragino Sans','Yu Gothic',sans-serif",
    title_font_size=15,
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    value_font_size=10,
)

TITLES = {
    "ranks": ("ランク・温度感・ステージの変化", "Rank, temperature and stage moves"),
    "campaigns": ("キャンペーンの健全性", "Campaign health"),
    "leaks": ("フォロー漏れ", "Follow-up leaks"),
    "conversion": ("コホート別の長期成約率", "Long-term conversion by cohort"),
    "referrals": ("紹介（顧客数 × 価値提供数 × 紹介率）", "Referrals (clients × value deliveries × referral rate)"),
    "handoffs": ("営業への引き渡し", "Handoffs to sales"),
    "content": ("コンテンツの残り週数", "Content runway"),
}

#: Japanese names of the columns, totals, sections and charts (English: the key, spaced).
LABELS = {
    "at": "日時",
    "email": "メール",
    "name": "氏名",
    "company": "会社",
    "owner": "担当者",
    "field": "項目",
    "from": "変更前",
    "to": "変更後",
    "direction": "方向",
    "cause": "原因",
    "explanation": "説明",
    "human_events": "人の反応",
    "machine_events": "機械の反応",
    "unknown_events": "不明",
    "count": "件数",
    "campaign": "キャンペーン",
    "item": "コンテンツ",
    "moves": "変化数",
    "moves_up": "上昇",
    "moves_total": "変化数",
    "up": "上昇",
    "down": "下降",
    "events_human": "人の反応",
    "events_machine": "機械の反応",
    "events_unknown": "判定不能",
    "sent": "送信",
    "failed": "失敗",
    "delivered": "配信",
    "deferred": "遅延",
    "bounced": "不達",
    "opens_human_unique": "開封（人・ユニーク）",
    "opens_human_total": "開封（人・延べ）",
    "opens_machine_total": "開封（機械・延べ）",
    "opens_unknown_total": "開封（不明・延べ）",
    "est_human_open_rate": "推定開封率（人）",
    "clicks_human_unique": "クリック（人・ユニーク）",
    "clicks_human_total": "クリック（人・延べ）",
    "clicks_machine_total": "クリック（スキャナー・延べ）",
    "unsubscribed": "配信停止",
    "complaints": "苦情",
    "complaint_rate": "苦情率",
    "complaint_level": "判定",
    "rank_moves": "ランク変化",
    "url": "リンク",
    "clicks_unique": "クリック（ユニーク）",
    "clicks_total": "クリック（延べ）",
    "week": "週",
    "type": "種類",
    "label": "判定",
    "temperature": "温度感",
    "rank": "ランク",
    "last_contact_at": "最終接触",
    "last_mail_at": "最終送信",
    "next_action": "次回アクション",
    "next_action_due": "期限",
    "days_overdue": "超過日数",
    "reason": "理由",
    "prospects": "見込み客",
    "promised_days": "約束の間隔（日）",
    "created_at": "作成",
    "days_open": "経過日数",
    "escalated_at": "エスカレーション",
    "cohort": "コホート",
    "won": "成約",
    "conversion_rate": "成約率",
    "won_short_term": "短期で成約",
    "won_long_term": "長期で成約",
    "amount": "金額",
    "median_days_to_win": "成約までの日数（中央値）",
    "months_since_entry": "登録からの月数",
    "cumulative_rate_percent": "累積成約率（%）",
    "deliveries": "価値提供数",
    "referrals": "紹介数",
    "referral_rate": "紹介率",
    "clients": "顧客数",
    "deliveries_per_client": "顧客あたり提供数",
    "target_rate": "目標紹介率",
    "kpi_expected": "KPI（期待値）",
    "kpi_actual": "実績",
    "handoffs": "引き渡し",
    "handoffs_total": "引き渡し",
    "acknowledged": "受理",
    "rejected": "却下",
    "open": "未対応",
    "escalated": "エスカレーション",
    "acceptance_rate": "受理率",
    "median_hours_to_decision": "判断までの時間（中央値・h）",
    "state": "状態",
    "hours_to_decision": "判断までの時間（h）",
    "verdict_reason": "却下理由",
    "mode": "方式",
    "when_exhausted": "尽きたら",
    "interval_days": "間隔（日）",
    "items": "コンテンツ数",
    "members": "対象者",
    "dry_now": "残りなし",
    "dry_within_8_weeks": "8週以内に尽きる",
    "min_weeks_left": "最短残り週数",
    "median_weeks_left": "残り週数（中央値）",
    "weeks_left": "残り週数",
    "running_dry": "尽きる対象者",
    "not_contacted_count": "長期未接触",
    "overdue_count": "期限切れ",
    "never_mailed_count": "未送信",
    "silent_count": "沈黙",
    "unacknowledged_count": "未受理",
    "silent_why_count": "届いていない",
    "postal_returned_count": "郵送の戻り",
    "kind": "種類",
    "last_mailed_at": "最終送信",
    "postal_code": "郵便番号",
    "prefecture": "都道府県",
    "address_line": "住所",
    # sections
    "Moves (newest first)": "変化の一覧（新しい順）",
    "Transition matrix": "遷移の集計",
    "Campaign items behind the moves": "変化のきっかけになったコンテンツ",
    "Per campaign and item": "キャンペーン・コンテンツ別",
    "Per campaign (unique across its items)": "キャンペーン別（コンテンツ間でユニーク）",
    "Top links (human and unknown clicks)": "よくクリックされたリンク（人・不明）",
    "Opens and clicks per week": "週ごとの開封とクリック",
    "Overdue next actions": "期限切れの次回アクション",
    "Never mailed, and why": "一度も送っていない見込み客と理由",
    "Silent longer than the cadence promises": "約束の間隔より長く送っていない",
    "Handoffs not acknowledged": "受理されていない引き渡し",
    "Post returned: address to fix": "郵送物が戻った宛先（住所の修正が必要）",
    "Mailable but not mailed, and why": "送れるのに届いていない見込み客と理由",
    "Conversion by cohort": "コホート別の成約",
    "Cumulative conversion (%) by months since entry": "登録からの月数別 累積成約率（%）",
    "Per client": "顧客別",
    "KPI: clients x deliveries per client x referral rate": "KPI：顧客数 × 顧客あたり提供数 × 紹介率",
    "Per reason": "理由別",
    "Why sales rejected": "営業が却下した理由",
    "Handoffs (newest first)": "引き渡しの一覧（新しい順）",
    "Weeks of unsent content per member": "対象者ごとの未送信コンテンツの残り週数",
    "Members by weeks left": "残り週数別の対象者数",
    # charts
    "Rank moves per week, by new rank": "週ごとのランク変化（変化後のランク別）",
    "Events behind the moves: human vs machine": "変化の元になった反応：人と機械",
    "Opens per week: human vs machine": "週ごとの開封：人と機械",
    "Opens and clicks per week per campaign (people, not machines)": (
        "キャンペーン別 週ごとの開封とクリック（機械を除く）"
    ),
    "Cumulative conversion by months since entry (%)": "登録からの月数別 累積成約率（%）",
    "Handoffs per week by outcome": "週ごとの引き渡し（結果別）",
    "human": "人",
    "machine": "機械",
    "unknown": "不明",
    "events": "反応",
    "Members by weeks of content left": "残り週数別の対象者数",
    # values (leaks' reasons, directions)
    "no consent": "同意の記録なし",
    "next action pending": "次回アクションあり（短期案件）",
    "suppressed": "配信停止リスト",
    "in no segment": "どのキャンペーンの対象でもない",
    "waiting": "送信待ち（まだ時期でない）",
    "paused": "本人が一時停止中",
    "complained": "苦情",
    "erased": "削除済み",
    "same": "変化なし",
    "rank_A": "ランクAに到達",
    "stage_SQL": "SQLに到達",
    "inquiry": "問い合わせ",
    "stage": "ステージ",
    "opened": "開封",
    "clicked": "クリック",
}
_WORDS = {
    "period": ("期間", "Period"),
    "filters": ("絞り込み", "Filters"),
    "summary": ("概要", "Summary"),
    "warnings": ("注意", "Warnings"),
    "more": ("件は省略（CSV / XLSX / JSON で全件）", "more rows (all rows: CSV / XLSX / JSON)"),
    "none": ("該当なし", "Nothing to show"),
    "generated": ("作成", "Generated"),
    "machine_note": (
        "「機械」はセキュリティスキャナーや画像の先読み（Apple MPP など）による開封・クリックで、"
        "人の反応とは分けて数えています。",
        "“Machine” opens and clicks come from security scanners and image prefetching (Apple MPP, ...): "
        "counted apart from people.",
    ),
}

_CSS = """
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font-family: 'Noto Sans CJK JP','Noto Sans JP','Hiragino Sans','Yu Gothic',system-ui,sans-serif;
       color:#1f2328; margin: 0 auto; max-width: 1200px; padding: 24px; font-size: 13px; line-height: 1.5; }
header { border-bottom: 3px solid #1f6feb; margin-bottom: 16px; padding-bottom: 8px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 22px 0 8px; border-left: 4px solid #1f6feb; padding-left: 8px; }
.meta { color: #57606a; font-size: 12px; }
.totals { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0; }
.totals div { border: 1px solid #d0d7de; border-radius: 6px; padding: 6px 12px; min-width: 110px; background: #f6f8fa; }
.totals b { display: block; font-size: 18px; }
.totals span { color: #57606a; font-size: 11px; }
.warn { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.note { color: #57606a; font-size: 12px; }
.chart { page-break-inside: avoid; break-inside: avoid; margin: 8px 0 16px; }
.chart svg { width: 100%; height: auto; max-height: 420px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; margin-bottom: 4px; }
table.wide { font-size: 11px; } table.wide th { font-size: 10px; }
th, td { border-bottom: 1px solid #d8dee4; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.k { white-space: nowrap; }
tr { page-break-inside: avoid; break-inside: avoid; }
.alarm { color: #cf222e; font-weight: 700; } .warning { color: #9a6700; font-weight: 700; }
.ev { display: inline-block; border-radius: 4px; padding: 0 4px; margin: 1px; font-size: 11px; }
.ev-human { background: #dafbe1; }
.ev-machine { background: #eaeef2; color: #57606a; text-decoration: line-through; }
.ev-unknown { background: #fff8c5; }
@media print { body { padding: 0; max-width: none; font-size: 10.5px; } .chart svg { max-height: 300px; }
  h2 { break-after: avoid; } table { font-size: 9.5px; }
  table.wide { font-size: 7.5px; } table.wide th { font-size: 7px; }
  th, td { padding: 2px 3px; } }
"""

_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
CHART_ROWS = 200  # an HTML report is read, not scrolled for ever: longer lists are in CSV / XLSX / JSON


_NOT_CONTACTED = re.compile(r"Not contacted for (\d+) days \(no personal contact, no mail\)")
_VALUE_COLUMNS = ("reason", "direction", "label", "state", "field", "type")


def t(text: str, language: str) -> str:
    if language == "ja":
        m = _NOT_CONTACTED.fullmatch(text)
        if m:
            return f"{m.group(1)}日以上接触なし（個別の接触もメールもなし）"
        return LABELS.get(text, text)
    return text.replace("_", " ") if text in LABELS and text.islower() else text


def _chart(chart: Chart, language: str) -> str:
    cls = {"line": pygal.Line, "bar": pygal.Bar, "stacked": pygal.StackedBar}[chart.kind]
    c = cls(
        style=_STYLE,
        width=900,
        height=340,
        js=[],  # no script: the page must work offline and print; the SVG is static
        title=t(chart.title, language),
        x_label_rotation=30 if len(chart.x_labels) > 8 else 0,
        show_minor_x_labels=True,
        legend_at_bottom=True,
        legend_at_bottom_columns=min(6, max(1, len(chart.series))),
        truncate_legend=40,
        print_values=False,
        margin=12,
        value_formatter=(lambda v: f"{v:.1f}%") if chart.percent else (lambda v: f"{v:g}"),
        show_dots=chart.kind == "line" and len(chart.x_labels) < 40,
        dots_size=3,
        stroke_style={"width": 2.5},
        include_x_axis=True,
    )
    c.x_labels = chart.x_labels
    if not chart.percent:  # counts: whole-number ticks (pygal would label 0.2, 0.4, ... for small counts)
        if chart.kind == "stacked":
            top = max(
                (sum(v or 0 for v in col) for col in zip(*(vals for _, vals in chart.series), strict=True)), default=0
            )
        else:
            top = max((v or 0 for _, vals in chart.series for v in vals), default=0)
        step = max(1, math.ceil(top / 8))
        c.y_labels = list(range(0, int(top) + step + 1, step))
    for name, values in chart.series:
        c.add(t(name, language), values)
    if not chart.series or all(not any(v for v in vals if v) for _, vals in chart.series):
        title = html.escape(t(chart.title, language))
        return f'<div class="chart"><h3>{title}</h3><p class="note">{_WORDS["none"][language != "ja"]}</p></div>'
    # pygal always adds a small script (its tooltips' config); the page stays static and script-free.
    svg = _SCRIPT.sub("", c.render(is_unicode=True, disable_xml_declaration=True))
    return f'<div class="chart">{svg}</div>'


def _value(column: str, value: Any, language: str = "en") -> str:
    if column == "events" or (isinstance(value, list) and value and isinstance(value[0], dict)):
        return "".join(
            f'<span class="ev ev-{html.escape(e.get("label", ""))}">{html.escape(cell(e))}</span>' for e in value
        )
    if column.endswith("_rate") and isinstance(value, (int, float)):
        return f"{value:.1%}" if column != "complaint_rate" else f"{value:.2%}"
    if column == "complaint_level" and value in ("warning", "alarm"):
        return f'<span class="{value}">{html.escape(value)}</span>'
    return html.escape(rate_text(column, value))


_SHORT = 8  # characters: a cell or heading this short is kept on one line
_KEEP = " class='k'"


def _section(s: Section, language: str) -> str:
    en = language != "ja"
    total = s.total if s.total is not None else len(s.rows)
    parts = [f"<h2>{html.escape(t(s.title, language))} <span class='note'>({total})</span></h2>"]
    if not s.rows:
        parts.append(f"<p class='note'>{_WORDS['none'][en]}</p>")
        return "".join(parts)
    columns = list(s.columns)
    if "events" in s.rows[0] and "events" not in columns:
        columns.append("events")
    # Short words (a field, a rank, a label, "温度感") never wrap: a narrow column otherwise stacks Japanese one
    # character per line, since any two CJK characters may break. Long text (explanations, titles) still wraps.
    labels = [t(c, language) for c in columns]
    head = "".join(f"<th{_KEEP if len(label) <= _SHORT else ''}>{html.escape(label)}</th>" for label in labels)
    body = []
    for row in s.rows[:CHART_ROWS]:
        tds = "".join(
            f"<td class='n'>{_value(c, row.get(c))}</td>"
            if isinstance(row.get(c), (int, float)) and not isinstance(row.get(c), bool)
            else f"<td{_KEEP}>{html.escape(t(row[c], language))}</td>"
            if c in _VALUE_COLUMNS and isinstance(row.get(c), str) and language == "ja" and row[c] in LABELS
            else f"<td{_KEEP if isinstance(row.get(c), str) and len(row[c]) <= _SHORT else ''}>"
            f"{_value(c, row.get(c))}</td>"
            for c in columns
        )
        body.append(f"<tr>{tds}</tr>")
    wide = " class='wide'" if len(columns) > 10 else ""
    parts.append(f"<table{wide}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    if total > min(len(s.rows), CHART_ROWS):
        parts.append(f"<p class='note'>… {total - min(len(s.rows), CHART_ROWS)} {_WORDS['more'][en]}</p>")
    return "".join(parts)


def to_html(report: Report, language: str = "en", generated: datetime | None = None) -> str:
    """The report as one HTML document in ``language`` (``ja`` or ``en``)."""
    en = language != "ja"
    p = report.params
    title = TITLES.get(report.kind, (report.title, report.title))[en]
    filters = "; ".join(f"{t(k, language)}: {', '.join(v)}" for k, v in p.filters().items() if v)
    totals = "".join(
        f"<div><b>{html.escape(rate_text(k, v) or '-')}</b><span>{html.escape(t(k, language))}</span></div>"
        for k, v in report.totals.items()
    )
    shown = report.warnings_ja if not en and len(report.warnings_ja) == len(report.warnings) else report.warnings
    warnings = "".join(f"<div class='warn'>⚠ {html.escape(w)}</div>" for w in shown)
    charts = "".join(_chart(c, language) for c in report.charts)
    sections = "".join(_section(s, language) for s in report.sections)
    note = f"<p class='note'>{_WORDS['machine_note'][en]}</p>" if report.kind in ("ranks", "campaigns") else ""
    shown_filters = " · " + html.escape(filters) if filters else ""
    stamp = (generated or p.until).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="{"en" if en else "ja"}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} — nurture</title><style>{_CSS}</style></head>
<body><header><h1>{html.escape(title)}</h1>
<div class="meta">{_WORDS["period"][en]}: {p.since:%Y-%m-%d} – {p.until:%Y-%m-%d} (UTC){shown_filters}
 · {_WORDS["generated"][en]} {stamp} · nurture {__version__}</div></header>
<section class="totals">{totals}</section>{warnings}{note}{charts}{sections}
</body></html>
"""
