"""MJML compiled once per template, then Jinja per prospect: the HTML, text part and subject of one mail.

The pipeline (listmonk's "compile once, render per subscriber", STYLE.md)::

    templates/x.mjml + mj-include'd partials --MJML (mjml-python), once per content hash--> compiled HTML
    compiled HTML (Jinja intact) --HTML->text, once--> text template (Jinja intact)
    per prospect, ONE sandboxed Jinja pass:  subject | text part | HTML (every output HTML-escaped)

Prospect data never passes through MJML: MJML only sees the marketer's files, and escaping happens in the
final Jinja pass, so a prospect called ``<script>`` comes out as ``&lt;script&gt;`` in the HTML (and as
itself in the subject and text part, which are not HTML). All environments are ``SandboxedEnvironment``
(marketers edit templates; ``{{ ''.__class__ }}`` is refused) with ``StrictUndefined``, so a misspelt variable
fails ``nurture check`` instead of sending "Dear ,".

The single pass (:class:`_SharedPlan`): the subject, the derived text and the HTML are one Jinja template
separated by a random token; the text section evaluates each shared ``{{ }}`` and ``{% if %}`` once with
``{% set %}`` and the HTML section reuses the value, escaped with ``|e`` (what autoescape would do). It saves
two Jinja context set-ups per message and the scan of the rendered HTML for links (bench/render.py). Templates
it does not handle (macros, ``{% raw %}``, includes, whitespace-control corner cases) fall back to the plain
way: HTML rendered with autoescape, text and subject rendered separately, links found by a scan; both ways
give identical output (tests/test_rendering.py checks the shipped samples).

Writing templates for mjml-python: Jinja control flow between MJML components goes inside ``<mj-raw>``;
do not put double quotes inside ``{{ }}`` in an attribute (use single quotes) and write ``&lt;`` for a bare
``<`` in ``mj-text`` (the parser rejects both). ``<mj-include path="...">`` paths are relative to the
templates folder, whichever file includes them, and may not leave it. mjml-python gives included sections no
width: wrap includes of sections in ``<mj-wrapper padding="0">`` as the shipped templates do.

Links: every ``<a href="http(s)://...">`` is offered to the sender's ``rewrite_link(url, index)`` hook (click
tracking), ``index`` counting the offered links from 0 in document order; links marked
``data-nurture="no-track"`` (unsubscribe, preferences, view in browser, the sender's website) are never
offered. The text part keeps the original URLs: it is what a reader copies from, and is not click-tracked.
"""

from __future__ import annotations

import functools
import hashlib
import html as htmlmod
import re
import secrets
import unicodedata
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, Protocol

import jinja2
import mjml
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from markupsafe import Markup

from nurture.core import clock
from nurture.core.errors import ConfigError, HeaderInjectionError

RewriteLink = Callable[[str, int], "str | None"]

#: The ``data-nurture`` value that keeps a link away from click tracking (unsubscribe, preferences, view).
NO_TRACK = "no-track"

_INCLUDE = re.compile(r"""<mj-include\b[^>]*?\bpath\s*=\s*(["'])(.*?)\1""", re.S)
_ANCHOR_TAG = re.compile(r"<[aA]\s[^>]*>")
_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
_NO_TRACK = re.compile(r"""\bdata-nurture\s*=\s*["']?no-track""", re.I)
_HEADER_BAD = re.compile(r"[\r\n\x00]")
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


class ItemLike(Protocol):
    """What :meth:`Renderer.render` needs of a content item (``nurture.plan.campaigns.ContentItem`` has it)."""

    subject: str
    template: str
    text_template: str | None
    vars: Mapping[str, Any]


@dataclass(frozen=True)
class RenderedMessage:
    """One mail's content, ready for ``nurture.compose.message``: header-safe subject, HTML and text parts."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class CompiledTemplate:
    """An MJML template compiled to HTML that still carries its Jinja markup.

    ``digest`` is the SHA-256 over the template and every included file (names and contents): equal digests,
    equal output, so the compile result is reused. ``files`` lists them, template first. ``html_source`` is
    MJML's output; ``html`` and ``text`` are it and its derived text part as separate Jinja templates (the
    plain way, and the baseline of bench/render.py); ``plan`` is the single-pass form, None when the planner
    stepped aside.
    """

    name: str
    digest: str
    files: tuple[str, ...]
    html_source: str
    html: jinja2.Template
    text: jinja2.Template
    plan: _SharedPlan | None = None


# --------------------------------------------------------------------------------------------------------
# Jinja environments


class _Sandbox(SandboxedEnvironment):
    """The sandbox with a fast path for the plain dicts of :func:`build_context`.

    ``{{ prospect.name }}`` on a dict first tries ``getattr`` and pays for an AttributeError before falling
    back to the item; looking the key up first halves the cost of each variable (bench/render.py). Items of
    a plain dict are data, which the sandbox hands out by subscript anyway, so nothing unsafe becomes
    reachable; anything else takes the sandbox's checked path.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def _html_env() -> SandboxedEnvironment:
    # autoescape=True (not select_autoescape): compiled templates come from strings, which select_autoescape
    # would leave unescaped.
    return _Sandbox(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _text_env(templates_dir: Path | None, trim_blocks: bool = True) -> SandboxedEnvironment:
    # trim/lstrip blocks: in a hand-written text template a `{% for %}` on a line of its own leaves no blank
    # line. Text derived from HTML has block tags inside lines (`{% if x %}<br>`), where trimming the newline
    # after a tag would join two lines: it uses trim_blocks=False and drops block-only lines itself.
    loader = jinja2.FileSystemLoader(str(templates_dir), encoding="utf-8") if templates_dir else None
    return _Sandbox(autoescape=False, undefined=jinja2.StrictUndefined, trim_blocks=trim_blocks,
                                lstrip_blocks=True, keep_trailing_newline=True, loader=loader)


_BLOCK_ONLY_LINE = re.compile(r"(?m)^((?:[ \t]*\{%[^{}\n]*?%\}[ \t]*)+)\n")


def _template_error(where: str, exc: Exception) -> ConfigError:
    """A Jinja problem as a ConfigError naming the file (and line when Jinja knows one)."""
    if isinstance(exc, SecurityError):
        return ConfigError(f"{where}: template refused by the sandbox: {exc}",
                           hint="templates may use variables and filters only, not Python internals")
    if isinstance(exc, jinja2.TemplateSyntaxError):
        line = f":{exc.lineno}" if exc.lineno and not where.endswith("(compiled)") else ""
        return ConfigError(f"{where}{line}: Jinja syntax error: {exc.message}")
    if isinstance(exc, jinja2.UndefinedError):
        return ConfigError(f"{where}: {exc.message}",
                           hint="check the variable name; for optional values write {{ x | default('') }}")
    return ConfigError(f"{where}: template error: {exc}")


# --------------------------------------------------------------------------------------------------------
# HTML -> text

_BLOCK = frozenset("address article aside blockquote center dd div dl dt footer form h1 h2 h3 h4 h5 h6 header "
                   "hr li main nav ol p pre section table tbody td tfoot th thead tr ul".split())
_SKIP = frozenset(("head", "style", "script", "title", "template"))
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|max-height\s*:\s*0|mso-hide\s*:\s*all", re.I)
_SPACES = re.compile(r"[ \t\r\n\f\v]+")


def _display_width(text: str) -> int:
    """Columns a monospace mail client gives ``text`` (CJK counts two), for heading underlines."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


class _TextExtractor(HTMLParser):
    """Readable plain text from mail HTML: headings underlined, paragraphs apart, list items with "- ",
    links as ``text (url)``; styles, scripts, comments and hidden elements (the preheader) dropped.
    Jinja markup in the HTML passes through as text, so this runs once per compiled template."""

    def __init__(self, canonical: Callable[[str], str] | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.canonical = canonical or (lambda text: text)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip_depth = 0
        self.stack: list[tuple[str, bool]] = []   # (tag, hides its content)
        self.links: list[tuple[str, int]] = []     # (href, position in current) of open <a>
        self.heading: str | None = None
        self.list_depth = 0

    def _flush(self, blank: bool = False) -> None:
        text = _SPACES.sub(" ", "".join(self.current)).strip()
        self.current = []
        if text:
            if self.heading in ("h1", "h2"):
                self.lines += ["", text, ("=" if self.heading == "h1" else "-") * min(_display_width(text), 72)]
            else:
                self.lines.append(text)
        if blank and self.lines and self.lines[-1] != "":
            self.lines.append("")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        style = dict(attrs).get("style") or ""
        hides = tag in _SKIP or bool(_HIDDEN_STYLE.search(style))
        if tag not in _VOID:
            self.stack.append((tag, hides))
            if hides:
                self.skip_depth += 1
        if self.skip_depth:
            return
        if tag == "br":
            self._flush()
        elif tag in ("ul", "ol"):
            self._flush(blank=True)
            self.list_depth += 1
        elif tag == "li":
            self._flush()
            self.current.append("  " * max(self.list_depth - 1, 0) + "- ")
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._flush(blank=True)
            self.heading = tag
            if tag not in ("h1", "h2"):
                self.current.append("■ ")
        elif tag in ("p", "table", "hr", "blockquote"):
            self._flush(blank=True)
        elif tag in _BLOCK:
            self._flush()
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.current)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or not any(t == tag for t, _ in self.stack):
            return
        while self.stack:
            open_tag, hides = self.stack.pop()
            if hides:
                self.skip_depth -= 1
            if open_tag == tag:
                break
        if self.skip_depth:
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            label = _SPACES.sub(" ", "".join(self.current[start:])).strip()
            if href and not href.startswith("#") and self.canonical(href) not in self.canonical(label):
                shown = href[len("mailto:"):] if href.startswith("mailto:") else href
                if not label:
                    self.current.append(shown)
                elif shown != label:
                    self.current.append(f" ({shown})")
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._flush(blank=True)
            self.heading = None
        elif tag in ("ul", "ol"):
            self._flush(blank=True)
            self.list_depth = max(self.list_depth - 1, 0)
        elif tag in ("p", "table", "blockquote"):
            self._flush(blank=True)
        elif tag in _BLOCK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.current.append(data)

    def text(self) -> str:
        self._flush()
        return _BLANK_RUNS.sub("\n\n", "\n".join(self.lines)).strip() + "\n"


def html_to_text(html: str, canonical: Callable[[str], str] | None = None) -> str:
    """Plain text for the text/plain part, readable in any client (see :class:`_TextExtractor`).
    ``canonical`` maps text before comparing a link's label with its URL (the planner's placeholders)."""
    parser = _TextExtractor(canonical)
    parser.feed(html)
    parser.close()
    return parser.text()


# --------------------------------------------------------------------------------------------------------
# Links


def rewrite_links(html: str, rewrite_link: RewriteLink) -> str:
    """``html`` with each trackable http(s) ``<a href>`` replaced by what ``rewrite_link(url, index)`` returns
    (None keeps it). Links marked ``data-nurture="no-track"`` are never passed to the hook.

    This scans the rendered HTML (about 20 us for a 20 kB mail); templates the single-pass planner handles
    (all shipped ones) get their links rewritten during the Jinja render instead, see :class:`_SharedPlan`.
    """
    index = 0

    def anchor(match: re.Match[str]) -> str:
        nonlocal index
        tag = match.group(0)
        href = _HREF.search(tag)
        if href is None or _NO_TRACK.search(tag):
            return tag
        url = htmlmod.unescape(href.group(3)).strip()
        if not url[:8].lower().startswith(("http://", "https://")):
            return tag
        new = rewrite_link(url, index)
        index += 1
        if new is None or new == url:
            return tag
        return tag[:href.start(3)] + htmlmod.escape(new, quote=True) + tag[href.end(3):]

    return _ANCHOR_TAG.sub(anchor, html)


# --------------------------------------------------------------------------------------------------------
# One Jinja pass for subject, text and HTML

_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_SENTINEL = re.compile("\ue000(\\d+)\ue001")
_SENTINEL_LINE = re.compile("(?m)^((?:[ \t]*\ue000\\d+\ue001[ \t]*)+)\n")
_BLOCK_WORD = re.compile(r"\{%[-+]?\s*(\w+)\s*(.*?)\s*[-+]?%\}$", re.S)
_VAR_BODY = re.compile(r"\{\{([-+]?)\s*(.*?)\s*([-+]?)\}\}$", re.S)
#: Constructs whose output the planner cannot re-escape safely, or that need a loader.
_UNPLANNED = frozenset(("macro", "call", "filter", "autoescape", "include", "import", "from", "extends", "block"))
#: Filters and names whose result depends on autoescape being on (they return Markup only then, or mix Markup
#: with plain strings): with them, ``|e`` after the fact would not give what autoescape gives.
_AUTOESCAPE_SENSITIVE = re.compile(r"\b(?:urlize|xmlattr|safe|format|join|indent|wordwrap|caller|super|"
                                   r"markup|escape|forceescape|e)\b", re.I)
#: Blocks that open a Jinja scope: a `{% set %}` inside them is not seen after them.
_SCOPES = {"for": "endfor", "macro": "endmacro", "call": "endcall", "filter": "endfilter", "with": "endwith",
           "block": "endblock", "set": "endset", "autoescape": "endautoescape", "raw": "endraw"}
LINK_FUNCTION = "_nurture_link"


@dataclass(frozen=True)
class _SharedPlan:
    """Jinja sources that let one render produce the text part and the HTML while evaluating each shared
    expression once: the text section runs first and ``{% set %}``s each value or ``{% if %}`` test, the HTML
    section reuses them. Tracked links call :data:`LINK_FUNCTION` in the HTML itself, so no scan of the
    rendered HTML is needed."""

    text: str
    html: str
    html_alone: str  # the HTML section when a text template replaces the derived text: nothing shared


def _plan_shared(html: str) -> _SharedPlan | None:
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
            return ("block" if src[2:3] not in "-+" and src[-3:-2] not in "-+" else "block-ws"), m.group(1), \
                m.group(2)
        return "other", "", ""

    kinds = [kind(n) for n in range(len(constructs))]
    if any(_AUTOESCAPE_SENSITIVE.search(body) for _, _, body in kinds):
        return None
    if any(k.startswith("block") and (word in _UNPLANNED or (word == "set" and "=" not in body))
           for k, word, body in kinds):
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
        return _SENTINEL.sub(lambda m: html_part(m, shared), _ANCHOR_TAG.sub(lambda m: anchor(m, shared), marked))

    def html_value(n: int, shared: set[int]) -> str:
        return f"_nv{n}" if n in shared else f"({kinds[n][2]})"

    def html_part(match: re.Match[str], shared: set[int]) -> str:
        # The combined template renders without autoescape (the subject and text must not be escaped), so
        # every HTML output is escaped here explicitly: `|e` is what autoescape does (Markup passes).
        n = int(match.group(1))
        k, mods, body = kinds[n]
        if n in shared:
            return f"{{{{ _nv{n}|e }}}}" if k == "var" else f"{{% if _nc{n} %}}"
        if k.startswith("var"):
            src = constructs[n]
            return f"{{{{{src[2] if src[2] in '-+' else ''} ({body})|e {src[-3] if src[-3] in '-+' else ''}}}}}"
        return constructs[n]

    def anchor(match: re.Match[str], shared: set[int]) -> str:
        tag = match.group(0)
        href = _HREF.search(tag)
        if href is None or _NO_TRACK.search(tag):
            return tag
        pieces = re.split("(\ue000\\d+\ue001)", href.group(3))
        if any(not kinds[int(p[1:-1])][0].startswith("var") for p in pieces[1::2]):
            return tag  # a {% %} inside href: left as written, not click-tracked
        static = htmlmod.unescape("".join(pieces[0::2])).strip().lower()
        if len(pieces) == 1 and not static.startswith(("http://", "https://")):
            return tag
        parts = [repr(htmlmod.unescape(p)) if i % 2 == 0 else html_value(int(p[1:-1]), shared)
                 for i, p in enumerate(pieces) if p]
        call = f"{{{{ {LINK_FUNCTION}({' ~ '.join(parts) or repr('')})|e }}}}"
        return tag[:href.start(3)] + call + tag[href.end(3):]

    return _SharedPlan(text=_SENTINEL.sub(text_part, text), html=html_section(shared),
                       html_alone=html_section(set()))


def _keep_link(url: Any) -> Any:
    """The link function when nothing rewrites links: the URL unchanged."""
    return url


def _link_function(rewrite_link: RewriteLink) -> Callable[[Any], str]:
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


# --------------------------------------------------------------------------------------------------------
# The renderer


class Renderer:
    """Compiles and renders the templates under ``templates_dir``. One per run (or per worker thread pool:
    rendering is thread-safe once a template is compiled).

    ``compile_count`` counts real MJML compilations (cache misses), for tests and benchmarks.
    A template is read from disk the first time :meth:`render` meets it; :meth:`compile` re-reads the files
    and compiles again only if their content hash changed.
    """

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = Path(templates_dir)
        self.compile_count = 0
        self._by_digest: dict[str, CompiledTemplate] = {}
        self._by_name: dict[str, CompiledTemplate] = {}
        self._html_env = _html_env()
        self._text_env = _text_env(self.templates_dir)
        self._derived_text_env = _text_env(None, trim_blocks=False)
        self._combined_env = _Sandbox(autoescape=False, undefined=jinja2.StrictUndefined,
                                      keep_trailing_newline=True)
        self._subjects: dict[str, jinja2.Template] = {}
        self._texts: dict[str, jinja2.Template] = {}
        self._combined: dict[tuple[str, str, bool], tuple[jinja2.Template, str]] = {}

    # -- files

    def _display(self, name: str) -> str:
        return str(PurePosixPath(self.templates_dir.name) / name)

    def _read(self, name: str, included_from: str | None = None) -> str:
        """The text of ``name`` (relative to the templates folder), refusing paths that leave it."""
        rel = PurePosixPath(name.strip().replace("\\", "/"))
        where = f"{self._display(included_from)}: mj-include " if included_from else ""
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ConfigError(f'{where}"{name}": template paths must be relative to the templates folder '
                              "and stay inside it")
        path = self.templates_dir / rel
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{where or ''}{self._display(str(rel))}: template not found",
                              hint=f"paths are relative to {self.templates_dir}") from None
        except OSError as exc:
            raise ConfigError(f"{self._display(str(rel))}: cannot read: {exc.strerror}") from None
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(f"{self._display(str(rel))}: not UTF-8", hint="save templates as UTF-8") from None

    def _sources(self, name: str) -> dict[str, str]:
        """The template and every file it includes, transitively, in first-seen order."""
        sources: dict[str, str] = {}
        todo: list[tuple[str, str | None]] = [(name, None)]
        while todo:
            current, parent = todo.pop(0)
            key = str(PurePosixPath(current.strip()))
            if key in sources:
                continue
            sources[key] = self._read(current, parent)
            todo += [(m.group(2), key) for m in _INCLUDE.finditer(sources[key])]
        return sources

    # -- compile

    def compile(self, template: str) -> CompiledTemplate:
        """``template`` (path relative to the templates folder) compiled to HTML with its Jinja intact.

        Reuses the previous result when the template and all its includes hash the same. MJML problems raise
        ConfigError naming the file (the template or the include at fault) and the usual causes.
        """
        sources = self._sources(template)
        digest = hashlib.sha256()
        for name, text in sources.items():
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
        key = digest.hexdigest()
        compiled = self._by_digest.get(key)
        if compiled is None:
            compiled = self._compile(template, sources, key)
            self._by_digest[key] = compiled
        self._by_name[template] = compiled
        return compiled

    def _compile(self, template: str, sources: dict[str, str], digest: str) -> CompiledTemplate:
        root = next(iter(sources))

        def load(path: str) -> str:
            key = str(PurePosixPath(path.strip()))
            if key not in sources:  # an include the scan missed (unusual quoting): read it now
                sources[key] = self._read(path, root)
            return sources[key]

        try:
            html = mjml.mjml2html(sources[root], include_loader=load, disable_comments=True)
        except ConfigError:
            raise
        except Exception as exc:  # mjml-python raises a bare ValueError with mrml's message
            raise self._mjml_error(root, sources, str(exc)) from None
        self.compile_count += 1
        where = f"{self._display(root)} (compiled)"
        try:
            html_template = self._html_env.from_string(html)
            text_template = self._derived_text_env.from_string(_BLOCK_ONLY_LINE.sub(r"\1", html_to_text(html)))
        except jinja2.TemplateSyntaxError as exc:
            # The compiled HTML's line numbers mean nothing to the author: find the source file at fault.
            for name, text in sources.items():
                try:
                    self._html_env.parse(text)
                except jinja2.TemplateSyntaxError as inner:
                    raise _template_error(self._display(name), inner) from None
            raise _template_error(where, exc) from None
        plan = _plan_shared(html)
        if plan is not None:
            try:  # the planner only moves Jinja constructs around; if that breaks them, render the plain way
                self._combined_env.parse(plan.text + plan.html)
                self._combined_env.parse(plan.html_alone)
            except jinja2.TemplateSyntaxError:
                plan = None
        return CompiledTemplate(name=template, digest=digest, files=tuple(sources), html_source=html,
                                html=html_template, text=text_template, plan=plan)

    def _mjml_error(self, root: str, sources: dict[str, str], message: str) -> ConfigError:
        culprit = root
        m = re.search(r'template from "([^"]+)"', message)
        if m:
            culprit = str(PurePosixPath(m.group(1).strip()))
        line = ""
        pos = re.search(r"at position (\d+):(\d+)", message)
        if pos:
            line = f":{pos.group(1)}"
        else:
            # mrml gives no position for these two classic mistakes; point at the first suspicious line.
            for number, text in enumerate(sources.get(culprit, "").splitlines(), 1):
                if re.search(r"""=\s*"[^"]*\{\{[^}"]*"[^}]*\}\}""", text) or re.search(r"<(?=[\s\d=])", text):
                    line = f":{number}"
                    break
        return ConfigError(
            f"{self._display(culprit)}{line}: MJML error: {message}",
            hint="common causes: an unclosed tag, double quotes inside {{ }} in an attribute (use single "
                 "quotes), a bare < in text (write &lt;), Jinja {% %} between MJML components outside "
                 "<mj-raw>")

    # -- render

    def _subject_template(self, source: str) -> jinja2.Template:
        template = self._subjects.get(source)
        if template is None:
            try:
                template = self._text_env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise _template_error(f"subject {source!r}", exc) from None
            self._subjects[source] = template
        return template

    def _text_template(self, name: str) -> jinja2.Template:
        template = self._texts.get(name)
        if template is None:
            self._read(name)  # same path rules and messages as MJML templates
            try:
                template = self._text_env.get_template(str(PurePosixPath(name.strip())))
            except jinja2.TemplateSyntaxError as exc:
                raise _template_error(self._display(name), exc) from None
            self._texts[name] = template
        return template

    def _combined_template(self, subject: str, compiled: CompiledTemplate,
                           derived_text: bool) -> tuple[jinja2.Template, str]:
        """One template rendering subject, text part (when derived) and HTML in a single pass, and the
        separator between them: a random token per template, which prospect data cannot contain by chance
        or design. Cached per (subject, template digest)."""
        key = (subject, compiled.digest, derived_text)
        found = self._combined.get(key)
        if found is None:
            self._subject_template(subject)  # syntax errors reported against the subject alone
            sep = f"\x00{secrets.token_hex(8)}\x00"
            plan = compiled.plan
            assert plan is not None
            body = f"{plan.text}{sep}{plan.html}" if derived_text else f"{sep}{plan.html_alone}"
            found = (self._combined_env.from_string(f"{subject}{sep}{body}"), sep)
            self._combined[key] = found
        return found

    def render(self, item: ItemLike, context: Mapping[str, Any], *,
               rewrite_link: RewriteLink | None = None) -> RenderedMessage:
        """Subject, HTML and text of ``item`` for one prospect's ``context`` (see :func:`build_context`).

        Raises HeaderInjectionError if the rendered subject holds CR, LF or NUL, ConfigError for template
        problems (unknown variable, sandbox violation, MJML error) naming the file.
        """
        compiled = self._by_name.get(item.template) or self.compile(item.template)
        text_name = item.text_template
        if compiled.plan is not None:
            template, sep = self._combined_template(item.subject, compiled, not text_name)
            link = _keep_link if rewrite_link is None else _link_function(rewrite_link)
            try:
                out = template.render(context, **{LINK_FUNCTION: link})
            except (jinja2.TemplateError, SecurityError) as exc:
                self._raise_render_error(item, context, exc)
            subject, text, html = out.split(sep, 2)
        else:
            subject = self._render_subject(item, context)
            try:
                html = compiled.html.render(context)
            except (jinja2.TemplateError, SecurityError) as exc:
                raise _template_error(self._display(item.template), exc) from None
            text = "" if text_name else compiled.text.render(context)
            if rewrite_link is not None:
                html = rewrite_links(html, rewrite_link)
        if _HEADER_BAD.search(subject):
            raise HeaderInjectionError(
                f"subject of {item.template}: rendered subject contains a line break or NUL: {subject!r}",
                hint="a prospect field used in the subject holds a newline; fix the prospect data")
        if text_name:
            try:
                text = self._text_template(text_name).render(context)
            except (jinja2.TemplateError, SecurityError) as exc:
                raise _template_error(self._display(text_name), exc) from None
        elif "\n\n\n" in text or "\n \n" in text:  # a false {% if %} left blank lines behind
            text = _BLANK_RUNS.sub("\n\n", text)
        return RenderedMessage(subject=subject.strip(), html=html, text=text)

    def _render_subject(self, item: ItemLike, context: Mapping[str, Any]) -> str:
        try:
            return self._subject_template(item.subject).render(context)
        except (jinja2.TemplateError, SecurityError) as exc:
            raise _template_error(f"subject of {item.template}", exc) from None

    def _raise_render_error(self, item: ItemLike, context: Mapping[str, Any], exc: Exception) -> NoReturn:
        """Say whether the subject or the template failed: the single pass cannot tell them apart."""
        self._render_subject(item, context)
        raise _template_error(self._display(item.template), exc) from None


def add_tracking_markup(html: str, *, open_pixel: str | None = None, honeypot: str | None = None) -> str:
    """``html`` with the open pixel and the bot honeypot link placed just before ``</body>``.

    Both are invisible to people and carry ``data-nurture="no-track"`` so they are never rewritten; the
    honeypot has no text and sits in a hidden element, so people neither see nor follow it (and the text part,
    rendered earlier, never contains it). Call after :meth:`Renderer.render`.
    """
    parts = []
    if honeypot:
        parts.append(f'<div style="display:none;max-height:0;overflow:hidden;mso-hide:all;" aria-hidden="true">'
                     f'<a href="{htmlmod.escape(honeypot)}" data-nurture="no-track" tabindex="-1"></a></div>')
    if open_pixel:
        parts.append(f'<img src="{htmlmod.escape(open_pixel)}" width="1" height="1" alt="" '
                     f'style="display:block;width:1px;height:1px;border:0;" data-nurture="no-track">')
    if not parts:
        return html
    snippet = "".join(parts)
    end = html.rfind("</body>")
    return html[:end] + snippet + html[end:] if end != -1 else html + snippet


# --------------------------------------------------------------------------------------------------------
# Context


def _field(obj: Any, name: str, default: Any = "") -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


PROSPECT_FIELDS = ("name", "company", "title", "industry", "email", "temperature", "stage", "rank", "owner",
                   "language", "time_zone")


def build_context(config: Any, campaign: Any, item: Any, prospect: Any, urls: Mapping[str, str]) -> dict:
    """The variables a template sees. ``prospect`` is a ``models.Prospect`` or a mapping with its fields;
    ``urls`` holds ``unsubscribe``, ``preferences`` and ``view_in_browser`` (``tracking.urls_for``).

    Values are plain dicts and strings, so templates cannot reach the database session or ORM internals.
    """
    identity = config.identity
    # One type check per call rather than per field (isinstance against an ABC is slow; this runs per mail).
    get = prospect.get if isinstance(prospect, Mapping) else functools.partial(getattr, prospect)
    attributes = dict(get("attributes", None) or {})
    person = {name: (get(name, "") or "") for name in PROSPECT_FIELDS}
    person["attributes"] = attributes
    cadence = getattr(campaign, "cadence", None)
    zone = getattr(cadence, "time_zone", None) or config.cadence.time_zone
    try:
        today = clock.now().astimezone(zoneinfo.ZoneInfo(zone)).date()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        today = clock.now().date()
    return {
        "prospect": person,
        "owner": {"name": person["owner"]},
        "campaign": {"name": campaign.name, "description": getattr(campaign, "description", ""),
                     "language": getattr(campaign, "language", "")},
        "sender": {
            "organization": identity.organization or identity.from_name,
            "from_name": getattr(campaign, "from_name", None) or identity.from_name or identity.organization,
            "postal_address": identity.postal_address,
            "inquiry": identity.inquiry,
            "website": identity.website,
        },
        "item": {"key": _field(item, "key", ""), "vars": dict(_field(item, "vars", None) or {})},
        "urls": {"unsubscribe": urls.get("unsubscribe", ""), "preferences": urls.get("preferences", ""),
                 "view_in_browser": urls.get("view_in_browser", "")},
        "today": today,
    }


# --------------------------------------------------------------------------------------------------------
# Footer check (特定電子メール法 and CAN-SPAM, shared/COMPLIANCE.md)

#: Wording that tells the reader they can refuse further mail, by language.
OPT_OUT_WORDS = {
    "ja": ("配信停止", "配信を停止", "配信解除", "登録解除", "受信を希望されない", "受信拒否", "購読を停止"),
    "en": ("unsubscribe", "opt out", "opt-out", "stop receiving", "no longer wish"),
}


class _FooterScan(HTMLParser):
    """Visible text of the HTML, plus each link's href and the text of the block around it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = _TextExtractor()
        self.blocks: list[list[str]] = [[]]
        self.links: list[tuple[str, int]] = []  # (href, block index)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.text.handle_starttag(tag, attrs)
        if self.text.skip_depth:
            return
        if tag in _BLOCK or tag == "br":
            self.blocks.append([])
        if tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.blocks) - 1))

    def handle_endtag(self, tag: str) -> None:
        self.text.handle_endtag(tag)
        if tag in _BLOCK:
            self.blocks.append([])

    def handle_data(self, data: str) -> None:
        self.text.handle_data(data)
        if not self.text.skip_depth:
            self.blocks[-1].append(data)


def _normalized(text: str) -> str:
    return _SPACES.sub("", unicodedata.normalize("NFKC", text)).lower()


def footer_problems(rendered: RenderedMessage, config: Any, language: str) -> list[str]:
    """What the mail lacks of what 特定電子メール法 (and CAN-SPAM) require in every mail: the sender's name,
    postal address, an opt-out statement with its link, an inquiry contact. Each is looked for in the visible
    HTML and in the text part; an empty list means the mail is complete.

    The opt-out statement counts when a paragraph holding opt-out wording (:data:`OPT_OUT_WORDS`) also
    holds an http(s) or mailto link, so "配信停止はこちら" must sit next to its link, as the law asks.
    """
    identity = config.identity
    words = OPT_OUT_WORDS.get(language, ()) + OPT_OUT_WORDS["en"]
    scan = _FooterScan()
    scan.feed(rendered.html)
    scan.close()
    html_text = _normalized(scan.text.text())
    text = _normalized(rendered.text)
    problems: list[str] = []

    def need(label: str, value: str, setting: str) -> None:
        if not value.strip():
            problems.append(f"{label}: [identity] {setting} is empty in the configuration")
            return
        wanted = _normalized(value)
        for part, haystack in (("HTML", html_text), ("text", text)):
            if wanted not in haystack:
                problems.append(f"{part} part lacks the {label} ({value.strip()!r})")

    need("sender name", identity.organization or identity.from_name, "organization")
    need("postal address", identity.postal_address, "postal_address")

    def opt_out_in_html() -> bool:
        for href, block in scan.links:
            if not href.lower().startswith(("http://", "https://", "mailto:")):
                continue
            around = _normalized("".join(scan.blocks[block]))
            if any(_normalized(w) in around for w in words):
                return True
        return False

    if not opt_out_in_html():
        problems.append("HTML part lacks an opt-out statement next to its link "
                        "(e.g. 配信停止はこちら / Unsubscribe, linked to {{ urls.unsubscribe }})")
    if not any(re.search(re.escape(w) + r".{0,200}?(https?://|mailto:|@)", unicodedata.normalize("NFKC", line),
                         re.I)
               for line in _paragraphs(rendered.text) for w in words):
        problems.append("text part lacks an opt-out statement with its URL")
    need("inquiry contact", identity.inquiry, "inquiry")
    return problems


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
