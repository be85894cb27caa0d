"""``nurture report referrals``: SEEDS 003 — referrals = clients x value deliveries per client x referral rate.

Clients are prospects at stage ``customer`` or with a ``won`` event before the end of the period. Per client:
the mails sent to them in the period (``deliveries``: the value deliveries), the referrals recorded in the
period (``nurture prospects referral``), and their rate (referrals per delivery). Totals: the KPI's three
factors, the referrals it expects at ``--target-rate`` (default 10 %) and the real count beside it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, or_, select

from nurture.report.model import Params, Report, Section, limited, rate
from nurture.store.models import Delivery, Event, Prospect
from nurture.store.states import DeliveryState


def build(engine: Engine, params: Params) -> Report:
    report = Report("referrals", "Referrals (clients x value deliveries x referral rate)", params)
    won = select(Event.prospect_id).where(Event.type == "won", Event.occurred_at < params.until)
    clients = [or_(Prospect.stage == "customer", Prospect.id.in_(won))]
    if params.industries:
        clients.append(Prospect.industry.in_(params.industries))
    if params.owners:
        clients.append(Prospect.owner.in_(params.owners))
    sent = (
        select(Delivery.prospect_id, func.count().label("n"))
        .where(
            Delivery.state.in_([DeliveryState.SENT, DeliveryState.UNKNOWN]),
            Delivery.sent_at >= params.since,
            Delivery.sent_at < params.until,
            *([Delivery.campaign.in_(params.campaigns)] if params.campaigns else []),
        )
        .group_by(Delivery.prospect_id)
        .subquery()
    )
    refs = (
        select(Event.prospect_id, func.count().label("n"))
        .where(Event.type == "referred", Event.occurred_at >= params.since, Event.occurred_at < params.until)
        .group_by(Event.prospect_id)
        .subquery()
    )
    d, r = func.coalesce(sent.c.n, 0), func.coalesce(refs.c.n, 0)
    with engine.connect() as conn:
        data = conn.execute(
            select(
                Prospect.email,
                Prospect.name,
                Prospect.company,
                Prospect.owner,
                d.label("deliveries"),
                r.label("referrals"),
            )
            .outerjoin(sent, sent.c.prospect_id == Prospect.id)
            .outerjoin(refs, refs.c.prospect_id == Prospect.id)
            .where(*clients)
            .order_by(r.desc(), d.desc(), Prospect.email)
        ).all()
    rows: list[dict[str, Any]] = [{**dict(x._mapping), "referral_rate": rate(x.referrals, x.deliveries)} for x in data]
    n_clients = len(rows)
    deliveries = sum(x["deliveries"] for x in rows)
    referrals = sum(x["referrals"] for x in rows)
    per_client = round(deliveries / n_clients, 2) if n_clients else 0.0
    shown, total = limited(rows, params.limit)
    report.sections.append(
        Section(
            "clients",
            "Per client",
            ["email", "name", "company", "owner", "deliveries", "referrals", "referral_rate"],
            shown,
            total,
        )
    )
    report.totals = {
        "clients": n_clients,
        "deliveries": deliveries,
        "deliveries_per_client": per_client,
        "referrals": referrals,
        "referral_rate": rate(referrals, deliveries),
        "target_rate": params.target_rate,
        "kpi_expected": round(n_clients * per_client * params.target_rate, 2),
        "kpi_actual": referrals,
    }
    report.sections.insert(
        0,
        Section(
            "kpi",
            "KPI: clients x deliveries per client x referral rate",
            ["clients", "deliveries_per_client", "target_rate", "kpi_expected", "kpi_actual", "referral_rate"],
            [
                {
                    k: report.totals[k]
                    for k in (
                        "clients",
                        "deliveries_per_client",
                        "target_rate",
                        "kpi_expected",
                        "kpi_actual",
                        "referral_rate",
                    )
                }
            ],
        ),
    )
    if n_clients and deliveries == 0:
        report.warn(
            f"{n_clients} client(s) got no value delivery in the period: referrals need a reason to talk",
            f"この期間、顧客 {n_clients} 件に価値提供（情報のお届け）がありません：紹介には話すきっかけが要ります",
        )
    return report
