"""The single pass: subject, text part and HTML of a mail from one Jinja render.

The plain way renders three Jinja templates per mail (subject, derived text, HTML with autoescape) and then
scans the HTML for links. :func:`plan_shared` turns a compiled template into Jinja sources that do all of it in
one render: the subject, the derived text and the HTML become one template separated by a random token (joined
by :meth:`nurture.compose.rendering.Renderer.render`); the text section evaluates each shared ``{{ }}`` and
``{% if %}`` once with ``{% set %}`` and the HTML section reuses the value, escaped with ``|e`` (what autoescape
would do). It saves two Jinja context set-ups per message and the scan of the rendered HTML for links
(bench/render.py).

Contract: the output of the single pass is identical to the plain way's. Templates the planner does not handle
(macros, ``{% raw %}``, includes, whitespace-control corner cases, filters whose result depends on autoescape)
get None, and the renderer renders them the plain way; tests/compose/test_rendering.py renders every shipped
sample both ways and compares. Tracked links (the rules of :mod:`nurture.compose.markup`) call
:data:`LINK_FUNCTION` inside the HTML section, bound per message by :func:`link_function`.
"""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from nurture.compose.html_text import html_to_text
from nurture.compose.markup import ANCHOR_TAG, RewriteLink, tracked_href

_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_SENTINEL = re.compile("\ue000(\\d+)\ue001")
_SENTINEL_LINE = re.compile("(?m)^((?:[ \t]*\ue000\\d+\ue001[ \t]*)+)\n")
_BLOCK_WORD = re.compile(r"\{%[-+]?\s*(\w+)\s*(.*?)\s*[-+]?%\}$", re.S)
_VAR_BODY = re.compile(r"\{\{([-+]?)\s*(.*?)\s*([-+]?)\}\}$", re.S)
#: Constructs whose output the planner cannot re-escape safely, or that need a loader.
_UNPLANNED = frozenset(("macro", "call", "filter", "autoescape", "include", "import", "from", "extends", "block"))
#: Filters and names whose result depends on autoescape being on (they return Markup only then, or mix Markup
#: with plain strings): with them, ``|e`` after the fact would not give what autoescape gives.
_AUTOESCAPE_SENSITIVE = re.compile(
    r"\b(?:urlize|xmlattr|safe|format|join|indent|wordwrap|caller|super|"
    r"markup|escape|forceescape|e)\b",
    re.I,
)
#: Blocks that open a Jinja scope: a `{% set %}` inside them is not seen after them.
_SCOPES = {
    "for": "endfor",
    "macro": "endmacro",
    "call": "endcall",
    "filter": "endfilter",
    "with": "endwith",
    "block": "endblock",
    "set": "endset",
    "autoescape": "endautoescape",
    "raw": "endraw",
}
#: The name under which the HTML section calls the per-message link function (:func:`link_function`).
LINK_FUNCTION = "_nurture_link"


@dataclass(frozen=True)
class SharedPlan:
    """Jinja sources that let one render produce the text part and the HTML while evaluating each shared
    expression once: the text section runs first and ``{% set %}``s each value or ``{% if %}`` test, the HTML
    section reuses them. Tracked links call :data:`LINK_FUNCTION` in the HTML itself, so no scan of the
    rendered HTML is needed."""

    text: str
    html: str
    html_alone: str  # the HTML section when a text template replaces the derived text: nothing shared


def plan_shared(html: str) -> SharedPlan | None:
    """The shared-evaluation sources for compiled ``html``, or None when the template uses constructs this
    planner does not handle (the renderer then renders text and HTML separately and scans for links)."""
    if "{% raw" in html or "\ue000" in html or "\ue001" in html:
        return None
    constructs: list[str] = []

    def mark(match: re.Match[str]) -> str:
        constructs.append(match.group(0))
        return f"\ue000{len(constructs) - 1}\ue001"

    marked = _CONSTRUCT.sub(mark, html)

    def kind(n: int) -> tuple[str, str, str]:
        src = constructs[n]
        if src.startswith("{{"):
            m = _VAR_BODY.match(src)
            if m is None:
                return "other", "", ""
            return ("var" if not (m.group(1) or m.group(3)) else "var-ws"), m.group(1) + m.group(3), m.group(2)
        if src.startswith("{%"):
            m = _BLOCK_WORD.match(src)
            if m is None:
                return "other", "", ""
            return ("block" if src[2:3] not in "-+" and src[-3:-2] not in "-+" else "block-ws"), m.group(1), m.group(2)
        return "other", "", ""

    kinds = [kind(n) for n in range(len(constructs))]
    if any(_AUTOESCAPE_SENSITIVE.search(body) for _, _, body in kinds):
        return None
    if any(
        k.startswith("block") and (word in _UNPLANNED or (word == "set" and "=" not in body)) for k, word, body in kinds
    ):
        return None

    def drop_block_lines(match: re.Match[str]) -> str:
        ids = [int(i) for i in _SENTINEL.findall(match.group(1))]
        return match.group(1) if all(kinds[i][0].startswith("block") for i in ids) else match.group(0)

    def canonical(text: str) -> str:
        return _SENTINEL.sub(lambda m: constructs[int(m.group(1))], text)

    text = _SENTINEL_LINE.sub(drop_block_lines, html_to_text(marked, canonical))
    in_text = [int(i) for i in _SENTINEL.findall(text)]
    if len(set(in_text)) != len(in_text):
        return None
    # Scope depth of each construct, in HTML order; only depth-0 values can be shared between sections.
    depth, shared = 0, set()
    for n, (k, word, _) in enumerate(kinds):
        if k == "block" and word in _SCOPES.values():
            depth -= 1
        elif k == "block" and word in _SCOPES and not (word == "set" and "=" in kinds[n][2]):
            depth += 1
            continue
        if depth == 0 and (k == "var" or (k == "block" and word == "if")):
            shared.add(n)
    shared &= set(in_text)

    def text_part(match: re.Match[str]) -> str:
        n = int(match.group(1))
        k, _, body = kinds[n]
        if n not in shared:
            return constructs[n]
        if k == "var":
            return f"{{% set _nv{n} = ({body}) %}}{{{{ _nv{n} }}}}"
        return f"{{% set _nc{n} = ({body}) %}}{{% if _nc{n} %}}"

    def html_section(shared: set[int]) -> str:
        return _SENTINEL.sub(lambda m: html_part(m, shared), ANCHOR_TAG.sub(lambda m: anchor(m, shared), marked))

    def html_value(n: int, shared: set[int]) -> str:
        return f"_nv{n}" if n in shared else f"({kinds[n][2]})"

    def html_part(match: re.Match[str], shared: set[int]) -> str:
        # The combined template renders without autoescape (the subject and text must not be escaped), so
        # every HTML output is escaped here explicitly: `|e` is what autoescape does (Markup passes).
        n = int(match.group(1))
        k, _, body = kinds[n]
        if n in shared:
            return f"{{{{ _nv{n}|e }}}}" if k == "var" else f"{{% if _nc{n} %}}"
        if k.startswith("var"):
            src = constructs[n]
            return f"{{{{{src[2] if src[2] in '-+' else ''} ({body})|e {src[-3] if src[-3] in '-+' else ''}}}}}"
        return constructs[n]

    def anchor(match: re.Match[str], shared: set[int]) -> str:
        tag = match.group(0)
        span = tracked_href(tag)
        if span is None:
            return tag
        start, end = span
        pieces = re.split("(\ue000\\d+\ue001)", tag[start:end])
        if any(not kinds[int(p[1:-1])][0].startswith("var") for p in pieces[1::2]):
            return tag  # a {% %} inside href: left as written, not click-tracked
        static = htmlmod.unescape("".join(pieces[0::2])).strip().lower()
        if len(pieces) == 1 and not static.startswith(("http://", "https://")):
            return tag
        parts = [
            repr(htmlmod.unescape(p)) if i % 2 == 0 else html_value(int(p[1:-1]), shared)
            for i, p in enumerate(pieces)
            if p
        ]
        call = f"{{{{ {LINK_FUNCTION}({' ~ '.join(parts) or repr('')})|e }}}}"
        return tag[:start] + call + tag[end:]

    return SharedPlan(text=_SENTINEL.sub(text_part, text), html=html_section(shared), html_alone=html_section(set()))


def keep_link(url: Any) -> Any:
    """The link function when nothing rewrites links: the URL unchanged."""
    return url


def link_function(rewrite_link: RewriteLink) -> Callable[[Any], str]:
    """The per-message :data:`LINK_FUNCTION`: numbers the http(s) links it sees and asks ``rewrite_link``."""
    index = 0

    def link(value: Any) -> str:
        nonlocal index
        url = (value.unescape() if isinstance(value, Markup) else str(value)).strip()
        if not url[:8].lower().startswith(("http://", "https://")):
            return url
        new = rewrite_link(url, index)
        index += 1
        return url if new is None else new

    return link
