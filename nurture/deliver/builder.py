"""One delivery's mail, built exactly as nurture sends it: :class:`MessageBuilder`.

The worker threads build every mail with it, and so does anything that needs the same bytes without sending
(bench/send.py builds the bare smtplib loop's messages with it, so the baseline carries the same content).
"""

from __future__ import annotations

from typing import Any

from nurture.checks.campaign import sample_prospect
from nurture.compose import Renderer, add_tracking_markup, build_context
from nurture.compose import links as tracking
from nurture.compose.message import OutgoingMessage, list_id_for, message_id_for, validate
from nurture.core.config import Config
from nurture.core.errors import NurtureError
from nurture.plan.campaigns import Campaign, ContentItem


class MessageBuilder:
    """Builds the :class:`~nurture.compose.message.OutgoingMessage` of one delivery: the item rendered for the
    prospect (each template compiled once per builder, Jinja per mail), links signed with the delivery id and
    click-tracked as the campaign and ``[tracking]`` say, the open pixel and honeypot link, List-Id,
    List-Unsubscribe and Message-ID; then every header value is validated.

    Not thread-safe: one per thread (it holds its own :class:`Renderer`, so nothing is shared). Making one reads
    the link-signing key: ConfigError when none is configured.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.renderer = Renderer(config.templates_dir)
        self.links = tracking.Links(config)

    def build(self, delivery_id: int, prospect: Any, campaign: Campaign, item: ContentItem) -> OutgoingMessage:
        """The mail of delivery ``delivery_id``: ``item`` of ``campaign`` for ``prospect`` (a row or object
        with ``id``, ``email``, ``name``, the fields templates see, ``compose.PROSPECT_FIELDS``, and
        ``attributes``).

        Raises ConfigError for a template problem (missing, not compiling, an unknown variable) and InputError
        (HeaderInjectionError among them) for a header value or a link that cannot go out; nothing is sent
        then. Whether the campaign or this prospect is at fault, :meth:`campaign_fault` tells.
        """
        config = self.config
        links = self.links
        urls = links.for_mail(delivery_id, prospect.id)
        context = build_context(config, campaign, item, prospect, urls)
        track_clicks = campaign.tracking.clicks and config.tracking.click_tracking
        rendered = self.renderer.render(
            item,
            context,
            rewrite_link=(lambda url, index: links.click(delivery_id, index, url)) if track_clicks else None,
        )
        pixel = urls["open_pixel"] if campaign.tracking.opens and config.tracking.open_pixel else None
        honeypot = links.honeypot(delivery_id) if config.tracking.honeypot_link else None
        msg = OutgoingMessage(
            delivery_id=delivery_id,
            campaign=campaign.name,
            item_key=item.key,
            to_address=prospect.email,
            to_name=prospect.name or "",
            from_address=campaign.from_address,
            from_name=campaign.from_name,
            reply_to=campaign.reply_to,
            subject=rendered.subject,
            html=add_tracking_markup(rendered.html, open_pixel=pixel, honeypot=honeypot),
            text=rendered.text,
            list_id=list_id_for(campaign.name, campaign.from_address),
            list_unsubscribe=links.list_unsubscribe(delivery_id, prospect.id, unsubscribe_url=urls["unsubscribe"]),
            message_id=message_id_for(delivery_id, campaign.name, campaign.from_address),
        )
        validate(msg)  # header injection and bad addresses fail this mail here, not inside the sender
        return msg

    def campaign_fault(self, campaign: Campaign, item: ContentItem) -> NurtureError | None:
        """Why no mail of ``item`` can be built at all, or None when one can.

        It builds the mail for the campaign check's made-up sample prospect
        (:func:`nurture.checks.campaign.sample_prospect`), which the check rendered before the run: when that
        fails too, the campaign's files are at fault (a template removed or broken since), not a prospect's
        data. Costs one render; meant for after a mail failed to build, not for every mail.
        """
        try:
            self.build(0, sample_prospect(campaign, item), campaign, item)
        except NurtureError as exc:
            return exc
        except Exception as exc:  # e.g. a template's runtime error that escaped the renderer's translation
            return NurtureError(f"{type(exc).__name__}: {exc}")
        return None
