"""Sender identities and preview URLs for rendering and footer tests: a complete Japanese and English
[identity] (every part 特定電子メール法 and CAN-SPAM ask for), and the no-track links a render needs."""

from __future__ import annotations

from pathlib import Path

from nurture.core.config import IdentityConfig

REPO = Path(__file__).resolve().parent.parent
URLS = {
    "unsubscribe": "https://news.example.com/u/TOKEN-U",
    "preferences": "https://news.example.com/p/TOKEN-P",
    "view_in_browser": "https://news.example.com/v/TOKEN-V",
}
JA = IdentityConfig(
    organization="株式会社サンプル製作所",
    from_name="製造業インサイト編集部",
    from_address="news@example.co.jp",
    postal_address="〒100-0005 東京都千代田区丸の内1-2-3 サンプルビル5階",
    inquiry="info@example.co.jp / 03-1234-5678",
    website="https://www.example.co.jp",
)
EN = IdentityConfig(
    organization="Northwind Systems Inc.",
    from_name="The Ops Digest",
    from_address="d@example.com",
    postal_address="100 Example Street, Suite 400, Boston, MA 02110, USA",
    inquiry="hello@example.com",
    website="https://www.example.com",
)
