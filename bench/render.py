"""Messages rendered per second per core: the sample newsletter, compiled once, rendered per prospect.

Usage: python bench/render.py [--seconds 3] [--rounds 5] [--campaign mfg-insights] [--item 1]

Each variant runs ``--rounds`` times, interleaved with the others, and the best round counts: on a shared
machine the best round is the one least disturbed by other processes.

Prints, in one run and on one core (this loop is single-threaded):
- ``render``: :meth:`Renderer.render` — subject, HTML (autoescaped), text part — with compile-once;
- ``render+links``: the same with a ``rewrite_link`` hook, as the sending engine calls it for click tracking;
- ``separate``/``separate+links``: what rendering costs without the single-pass planner (subject, HTML and
  text rendered separately, links found by scanning the HTML), for comparison;
- ``bare-stock``: a bare Jinja render of the same compiled HTML (HTML only: no subject, no text part, no links)
  in a stock ``jinja2.sandbox.SandboxedEnvironment(autoescape=True)``, i.e. Jinja with nothing of nurture;
- ``bare-tuned``: the same in nurture's own sandbox (with its fast path for dict lookups), the strictest floor;
- ``bare-unsandboxed``: the same HTML in a stock ``jinja2.Environment(autoescape=True)`` (for information).
Targets (issue 3): render >= 8,000/s and >= 0.8 x bare. Both ratios are printed: render does three parts
(subject, text, HTML) where bare does one, so against the tuned floor it cannot reach 0.8.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import jinja2
import jinja2.sandbox

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nurture import compose
from nurture.core.config import Config, IdentityConfig
from nurture.plan import campaigns

IDENTITY = IdentityConfig(
    organization="株式会社サンプル製作所",
    from_name="サンプル製作所 ニュース",
    from_address="news@example.co.jp",
    postal_address="〒100-0005 東京都千代田区丸の内1-2-3 サンプルビル5階",
    inquiry="info@example.co.jp / 03-1234-5678",
    website="https://www.example.co.jp",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rate(fn, contexts, seconds: float) -> float:
    """Calls per second of ``fn(context)`` cycling over ``contexts`` for about ``seconds``."""
    for ctx in contexts[:50]:  # warm-up
        fn(ctx)
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for ctx in contexts:
            fn(ctx)
        n += len(contexts)
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--campaign", default="mfg-insights")
    parser.add_argument("--item", type=int, default=1, help="1-based content item number")
    args = parser.parse_args()

    cfg = Config(identity=IDENTITY, root=REPO)
    campaign = campaigns.load_campaign(cfg.campaigns_dir / f"{args.campaign}.toml", cfg)
    item = campaign.content.items[args.item - 1]
    renderer = compose.Renderer(cfg.templates_dir)
    t0 = time.perf_counter()
    compiled = renderer.compile(item.template)
    compile_ms = (time.perf_counter() - t0) * 1000

    contexts = []
    for i in range(500):
        prospect = {
            "name": f"山田 太郎{i}",
            "company": f"山田精機株式会社 第{i}工場",
            "owner": "佐藤",
            "email": f"p{i}@example.jp",
            "industry": "製造業",
            "temperature": "warm",
        }
        urls = {
            k: f"https://news.example.com/{k[0]}/{i:08d}tok" for k in ("unsubscribe", "preferences", "view_in_browser")
        }
        contexts.append(compose.build_context(cfg, campaign, item, prospect, urls))

    plain = jinja2.Environment(autoescape=True).from_string(compiled.html_source)
    stock = jinja2.sandbox.SandboxedEnvironment(autoescape=True).from_string(compiled.html_source)
    separate = compose.Renderer(cfg.templates_dir, single_pass=False)
    link = lambda url, index: f"https://news.example.com/c/123/{index}"  # noqa: E731
    variants = {
        "render": lambda c: renderer.render(item, c),
        "render+links": lambda c: renderer.render(item, c, rewrite_link=link),
        "separate": lambda c: separate.render(item, c),
        "separate+links": lambda c: separate.render(item, c, rewrite_link=link),
        "bare-stock": lambda c: stock.render(c),
        "bare-tuned": lambda c: compiled.html.render(c),
        "bare-unsandboxed": lambda c: plain.render(c),
    }
    results = dict.fromkeys(variants, 0.0)
    for _ in range(args.rounds):
        for name, fn in variants.items():
            results[name] = max(results[name], rate(fn, contexts, args.seconds))
    sample = renderer.render(item, contexts[0])
    print(f"cpu: {cpu_model()}; nproc: {os.cpu_count()}; python {platform.python_version()}")
    print(
        f"template: {item.template} ({len(compiled.files)} files); MJML compile once: {compile_ms:.1f} ms; "
        f"html {len(sample.html):,} chars, text {len(sample.text):,} chars"
    )
    for name, value in results.items():
        print(f"{name:>18}: {value:9,.0f} messages/s/core   ({1e6 / value:6.1f} us each)")
    for bare in ("bare-stock", "bare-tuned"):
        ratio = results["render"] / results[bare]
        ok = results["render"] >= 8000 and ratio >= 0.8
        print(
            f"render / {bare} = {ratio:.2f}; render+links / {bare} = "
            f"{results['render+links'] / results[bare]:.2f}; target >= 8,000/s and >= 0.8 x {bare}: "
            f"{'met' if ok else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
