"""MJML compiled once per template, then Jinja per prospect: the subject, HTML and text part of one mail.

The pipeline (listmonk's "compile once, render per subscriber", STYLE.md)::

    templates/x.mjml + mj-include'd partials --MJML (mjml-python), once per content hash--> compiled HTML
    compiled HTML (Jinja intact) --HTML->text (nurture.compose.html_text), once--> text template (Jinja intact)
    per prospect, ONE sandboxed Jinja pass:  subject | text part | HTML (every output HTML-escaped)

Prospect data never passes through MJML: MJML only sees the marketer's files, and escaping happens in the
final Jinja pass, so a prospect called ``<script>`` comes out as ``&lt;script&gt;`` in the HTML (and as
itself in the subject and text part, which are not HTML). All environments are ``SandboxedEnvironment``
(marketers edit templates; ``{{ ''.__class__ }}`` is refused) with ``StrictUndefined``, so a misspelt variable
fails ``nurture check`` instead of sending "Dear ,".

The single pass (:mod:`nurture.compose.shared_plan`) renders subject, derived text and HTML as one Jinja
template and rewrites tracked links during that render. Templates it does not handle fall back to the plain
way: HTML rendered with autoescape, text and subject rendered separately, links found by a scan
(:func:`nurture.compose.markup.rewrite_links`); both ways give identical output, and ``single_pass=False``
makes a renderer take the plain way for every template (the reference in tests and bench/render.py).

Writing templates for mjml-python: Jinja control flow between MJML components goes inside ``<mj-raw>``;
do not put double quotes inside ``{{ }}`` in an attribute (use single quotes) and write ``&lt;`` for a bare
``<`` in ``mj-text`` (the parser rejects both). ``<mj-include path="...">`` paths are relative to the
templates folder, whichever file includes them, and may not leave it. mjml-python gives included sections no
width: wrap includes of sections in ``<mj-wrapper padding="0">`` as the shipped templates do.

Links: see :mod:`nurture.compose.markup` for which links are offered to ``rewrite_link(url, index)``.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, Protocol

import jinja2
import mjml
from jinja2.sandbox import SandboxedEnvironment, SecurityError

# Compatibility: nurture/deliver/engine.py, nurture/web/app.py and bench/*.py import these names from this
# module; they live in nurture.compose.context and nurture.compose.markup (import them from nurture.compose).
from nurture.compose.html_text import html_to_text, squeeze_blank_lines
from nurture.compose.markup import RewriteLink, rewrite_links
from nurture.compose.shared_plan import LINK_FUNCTION, SharedPlan, keep_link, link_function, plan_shared
from nurture.core.errors import ConfigError, HeaderInjectionError

_INCLUDE = re.compile(r"""<mj-include\b[^>]*?\bpath\s*=\s*(["'])(.*?)\1""", re.S)
_HEADER_BAD = re.compile(r"[\r\n\x00]")


class ItemLike(Protocol):
    """What :meth:`Renderer.render` needs of a content item (``nurture.plan.campaigns.ContentItem`` has it)."""

    @property
    def subject(self) -> str: ...

    @property
    def template(self) -> str: ...

    @property
    def text_template(self) -> str | None: ...


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
    plan: SharedPlan | None = None


# --------------------------------------------------------------------------------------------------------
# Jinja environments


class _Sandbox(SandboxedEnvironment):
    """The sandbox with a fast path for the plain dicts of :func:`nurture.compose.context.build_context`.

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
    return _Sandbox(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=trim_blocks,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        loader=loader,
    )


_BLOCK_ONLY_LINE = re.compile(r"(?m)^((?:[ \t]*\{%[^{}\n]*?%\}[ \t]*)+)\n")


def _template_error(where: str, exc: Exception) -> ConfigError:
    """A Jinja problem as a ConfigError naming the file (and line when Jinja knows one)."""
    if isinstance(exc, SecurityError):
        return ConfigError(
            f"{where}: template refused by the sandbox: {exc}",
            hint="templates may use variables and filters only, not Python internals",
        )
    if isinstance(exc, jinja2.TemplateSyntaxError):
        line = f":{exc.lineno}" if exc.lineno and not where.endswith("(compiled)") else ""
        return ConfigError(f"{where}{line}: Jinja syntax error: {exc.message}")
    if isinstance(exc, jinja2.UndefinedError):
        return ConfigError(
            f"{where}: {exc.message}", hint="check the variable name; for optional values write {{ x | default('') }}"
        )
    return ConfigError(f"{where}: template error: {exc}")


_MISSING_NAME = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'|no element '?([^']+?)'?$")
_JINJA_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def missing_name(exc: Exception) -> str | None:
    """The variable or attribute an UndefinedError is about (``compnay`` of "'dict object' has no attribute
    'compnay'"), or None."""
    if not isinstance(exc, jinja2.UndefinedError):
        return None
    m = _MISSING_NAME.search(exc.message or "")
    return next((g for g in m.groups() if g), None) if m else None


def known_names(context: Mapping[str, Any], depth: int = 3) -> list[str]:
    """Every dotted name a template can reach in ``context`` through plain dicts (``prospect.company``,
    ``prospect.attributes.plan``), to suggest the nearest one for a misspelt variable."""
    names: list[str] = []
    todo: list[tuple[str, Any, int]] = [("", context, 0)]
    while todo:
        prefix, value, level = todo.pop(0)
        for key, inner in value.items():
            if not isinstance(key, str) or key.startswith("_") or key == LINK_FUNCTION:
                continue
            name = f"{prefix}{key}"
            names.append(name)
            if isinstance(inner, Mapping) and level + 1 < depth:
                todo.append((name + ".", inner, level + 1))
    return names


def nearest_name(missing: str, context: Mapping[str, Any]) -> str | None:
    """The known dotted name whose last part is closest to ``missing`` (difflib), or None."""
    by_last: dict[str, str] = {}
    for name in known_names(context):
        by_last.setdefault(name.rsplit(".", 1)[-1], name)
    close = difflib.get_close_matches(missing, list(by_last), n=1, cutoff=0.6)
    return by_last[close[0]] if close else None


def _template_line(exc: BaseException) -> int | None:
    """The line of the template being rendered when ``exc`` was raised (Jinja rewrites the traceback so that
    template code shows as frames of its own file, ``<template>`` for one made from a string)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name in ("top-level template code", "template") or code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_SHARED_VALUE = re.compile(r"^set _nv\d+ = \((.*)\)$|^_nv\d+(\|e)?$", re.S)


def _expression(construct: str) -> str:
    """The expression inside ``{{ x }}`` or ``{% if x %}`` without spaces, as the single-pass planner's
    ``{% set _nv1 = (x) %}`` holds it too ("" for the planner's own references)."""
    inner = construct[2:-2].strip().strip("-+").strip()
    m = _SHARED_VALUE.match(inner)
    if m:
        inner = m.group(1) or ""
    elif inner.startswith(("if ", "elif ")):
        inner = inner.split(" ", 1)[1]
    inner = "".join(inner.split())
    if inner.endswith("|e") and inner.startswith("("):  # the planner's escaped form of a value: (x)|e
        inner = inner[1:-3]
    return inner


def _find_line(sources: list[tuple[str, str]], found: Any) -> tuple[str, int] | None:
    """The first (file, line) of ``sources`` (display name, text) where ``found(construct)`` holds for a Jinja
    construct ({{ }} or {% %}) starting on that line."""
    for display, text in sources:
        for m in _JINJA_CONSTRUCT.finditer(text):
            if found(m.group(0)):
                return display, text.count("\n", 0, m.start()) + 1
    return None


class Renderer:
    """Compiles and renders the templates under ``templates_dir``. One per run (or per worker thread pool:
    rendering is thread-safe once a template is compiled).

    ``compile_count`` counts real MJML compilations (cache misses), for tests and benchmarks.
    A template is read from disk the first time :meth:`render` meets it; :meth:`compile` re-reads the files
    and compiles again only if their content hash changed. ``single_pass=False`` renders every template the
    plain way (no :class:`~nurture.compose.shared_plan.SharedPlan`): the same output, for comparison.
    """

    def __init__(self, templates_dir: Path, *, single_pass: bool = True) -> None:
        self.templates_dir = Path(templates_dir)
        self.single_pass = single_pass
        self.compile_count = 0
        self._by_digest: dict[str, CompiledTemplate] = {}
        self._by_name: dict[str, CompiledTemplate] = {}
        self._html_env = _html_env()
        self._text_env = _text_env(self.templates_dir)
        self._derived_text_env = _text_env(None, trim_blocks=False)
        self._combined_env = _Sandbox(autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        self._subjects: dict[str, jinja2.Template] = {}
        self._texts: dict[str, jinja2.Template] = {}
        self._combined: dict[tuple[str, str, bool], tuple[jinja2.Template, str]] = {}
        self._combined_source: dict[tuple[str, str, bool], str] = {}  # for locating a runtime error

    # -- files

    def _display(self, name: str) -> str:
        return str(PurePosixPath(self.templates_dir.name) / name)

    def _read(self, name: str, included_from: str | None = None) -> str:
        """The text of ``name`` (relative to the templates folder), refusing paths that leave it."""
        rel = PurePosixPath(name.strip().replace("\\", "/"))
        where = f"{self._display(included_from)}: mj-include " if included_from else ""
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ConfigError(
                f'{where}"{name}": template paths must be relative to the templates folder and stay inside it'
            )
        path = self.templates_dir / rel
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"{where or ''}{self._display(str(rel))}: template not found",
                hint=f"paths are relative to {self.templates_dir}",
            ) from None
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
        plan = plan_shared(html) if self.single_pass else None
        if plan is not None:
            try:  # the planner only moves Jinja constructs around; if that breaks them, render the plain way
                self._combined_env.parse(plan.text + plan.html)
                self._combined_env.parse(plan.html_alone)
            except jinja2.TemplateSyntaxError:
                plan = None
        return CompiledTemplate(
            name=template,
            digest=digest,
            files=tuple(sources),
            html_source=html,
            html=html_template,
            text=text_template,
            plan=plan,
        )

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
            "<mj-raw>",
        )

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

    def _combined_template(
        self, subject: str, compiled: CompiledTemplate, derived_text: bool
    ) -> tuple[jinja2.Template, str]:
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
            source = f"{subject}{sep}{body}"
            found = (self._combined_env.from_string(source), sep)
            self._combined[key] = found
            self._combined_source[key] = source
        return found

    def render(
        self, item: ItemLike, context: Mapping[str, Any], *, rewrite_link: RewriteLink | None = None
    ) -> RenderedMessage:
        """Subject, HTML and text of ``item`` for one prospect's ``context``
        (:func:`nurture.compose.context.build_context`); ``rewrite_link`` is the click-tracking hook of
        :mod:`nurture.compose.markup`.

        Raises HeaderInjectionError if the rendered subject holds CR, LF or NUL, ConfigError for template
        problems (unknown variable, sandbox violation, MJML error) naming the file.
        """
        compiled = self._by_name.get(item.template) or self.compile(item.template)
        text_name = item.text_template
        if compiled.plan is not None:
            template, sep = self._combined_template(item.subject, compiled, not text_name)
            link = keep_link if rewrite_link is None else link_function(rewrite_link)
            try:
                out = template.render(context, **{LINK_FUNCTION: link})
            except Exception as exc:  # also a template's own runtime error: {{ 1 / 0 }}
                key = (item.subject, compiled.digest, not text_name)
                self._raise_render_error(item, context, exc, self._combined_source.get(key, ""))
            subject, text, html = out.split(sep, 2)
        else:
            subject = self._render_subject(item, context)
            try:
                html = compiled.html.render(context)
                text = "" if text_name else compiled.text.render(context)
            except Exception as exc:
                raise self._runtime_error(item, context, exc, compiled.html_source) from None
            if rewrite_link is not None:
                html = rewrite_links(html, rewrite_link)
        if _HEADER_BAD.search(subject):
            raise HeaderInjectionError(
                f"subject of {item.template}: rendered subject contains a line break or NUL: {subject!r}",
                hint="a prospect field used in the subject holds a newline; fix the prospect data",
            )
        if text_name:
            text_template = self._text_template(text_name)
            try:
                text = text_template.render(context)
            except Exception as exc:
                raise self._runtime_error(item, context, exc, None, text_file=text_name) from None
        elif "\n\n\n" in text or "\n \n" in text:  # a false {% if %} left blank lines behind
            text = squeeze_blank_lines(text)
        return RenderedMessage(subject=subject.strip(), html=html, text=text)

    def _render_subject(self, item: ItemLike, context: Mapping[str, Any]) -> str:
        try:
            return self._subject_template(item.subject).render(context)
        except Exception as exc:
            raise self._runtime_error(item, context, exc, None, subject_only=True) from None

    def _raise_render_error(self, item: ItemLike, context: Mapping[str, Any], exc: Exception, source: str) -> NoReturn:
        """Say whether the subject or the template failed: the single pass cannot tell them apart."""
        self._render_subject(item, context)
        raise self._runtime_error(item, context, exc, source) from None

    def _fails_alike(self, expression: str, context: Mapping[str, Any], exc: Exception) -> bool:
        try:
            self._combined_env.from_string("{{ " + expression + " }}").render(context)
        except Exception as alone:
            return type(alone) is type(exc)
        return False

    def _runtime_error(
        self,
        item: ItemLike,
        context: Mapping[str, Any],
        exc: Exception,
        rendered_source: str | None,
        *,
        text_file: str | None = None,
        subject_only: bool = False,
    ) -> ConfigError:
        """A template failing while it renders, as a ConfigError naming the author's file and line (not the
        compiled HTML's) and, for an unknown variable, the nearest known name. ``rendered_source`` is the
        Jinja source that was being rendered (compiled HTML or the single-pass template), to find the failing
        construct by its line; ``text_file`` names the hand-written text template that failed;
        ``subject_only``: the subject failed."""
        key = getattr(item, "key", None)
        subject_where = f'subject of item "{key}"' if key else f"subject of {item.template}"
        if subject_only:
            sources = [(subject_where, item.subject)]
        elif text_file:
            sources = [(self._display(text_file), self._read(text_file))]
        else:
            try:
                sources = [(self._display(n), t) for n, t in self._sources(item.template).items()]
            except ConfigError:
                sources = []
        name = missing_name(exc)
        where: tuple[str, int] | None = None
        if name is not None:
            word = re.compile(rf"\b{re.escape(name)}\b")
            where = _find_line(sources, lambda construct: bool(word.search(construct)))
        else:
            line = _template_line(exc)
            if text_file and line:
                where = (sources[0][0], line)
            elif line and rendered_source is not None:
                lines = rendered_source.splitlines() or [rendered_source]
                on_line = lines[line - 1] if line <= len(lines) else ""
                wanted = {_expression(c) for c in _JINJA_CONSTRUCT.findall(on_line)} - {""}
                # Several constructs on that line (MJML output joins lines): keep those failing alone alike.
                failing = {e for e in wanted if self._fails_alike(e, context, exc)}
                wanted = failing or wanted
                where = _find_line(sources, lambda construct: _expression(construct) in wanted)
            elif subject_only:
                where = (subject_where, 1)
        if where is None:
            place = sources[0][0] if sources else self._display(item.template)
        else:
            place = where[0] if where[0] == subject_where else f"{where[0]}:{where[1]}"
        if isinstance(exc, SecurityError):
            return ConfigError(
                f"{place}: template refused by the sandbox: {exc}",
                hint="templates may use variables and filters only, not Python internals",
            )
        if isinstance(exc, jinja2.UndefinedError):
            close = nearest_name(name, context) if name else None
            tip = f' (did you mean "{close}"?)' if close and close.rsplit(".", 1)[-1] != name else ""
            return ConfigError(
                f"{place}: {exc.message}{tip}",
                hint="check the variable name; for optional values write {{ x | default('') }}",
            )
        if isinstance(exc, jinja2.TemplateError):
            return ConfigError(f"{place}: template error: {exc}")
        return ConfigError(f"{place}: template error: {type(exc).__name__}: {exc}")
