"""The pitch model of the information-only check: a small linear classifier over character n-grams (Japanese)
or words, word pairs and character 5-grams inside words (English), plus cues and the hits of the shipped
rules, trained on the labelled corpus in ``tests/checks/corpus/items-*.jsonl`` and shipped as ``model.json``
beside this file.

Why a model as well as rules: rules written while looking at a small corpus know its phrases and little else
(issue 14: 73 % / 37 % recall on text written apart). A linear model over short n-grams generalises by class
(何社が導入済み, "don't get left behind", 送料を当社が負担) and stays explainable: a sentence's score is a sum of
per-feature weights, so the features that pushed it over the line are the evidence a finding shows.

Contract
--------
``PitchModel.score(unit, rule_ids=()) -> Score``: the probability that ``unit`` (one sentence or paragraph,
NFKC-normalised and ASCII-lowercased, see :func:`prepare`) is a sales pitch, and the features that contributed
most, each with its weight and its span in ``unit``. ``rule_ids`` are the ids of shipped rules that hit inside
the unit; they are features like any n-gram (a rule's weight is learnt, so a rule that misfires on
informational text counts for less).

``train(docs, language, ...) -> PitchModel``: logistic regression over n-grams scaled by their naive-Bayes
log-count ratio (:func:`nb_scale`; AdaGrad, L2, balanced classes, a fixed seed), pure Python: about 1 s of
CPU per language for 800 items. Shipped weights already include the scale: scoring is a sum of weights.
Its decision thresholds (``error_at``, ``veto_below``, ``mail_error_at``) are chosen by
:func:`nurture.checks.fit.fit`, inside the training items. ``load_model()`` reads the shipped file once per
process (no network, no scikit-learn at run time). ``bench/content.py`` trains on k-1 folds and scores the
held-out fold; ``python bench/content.py --write-model`` refits the shipped file on the whole corpus.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import random
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = Path(__file__).resolve().parent / "model.json"
CUES_FILE = Path(__file__).resolve().parent / "cues.toml"
CORPUS_DIR = Path(__file__).resolve().parent.parent.parent / "tests" / "checks" / "corpus"
THRESHOLD = 0.5
FORMAT = 2
#: Decision thresholds a model carries until :func:`nurture.checks.fit.fit` chooses them inside its training data.
ERROR_AT = 0.5
VETO_BELOW = 0.1
RATE = {"ja": 0.5, "en": 0.2}
#: The count added to each class in :func:`nb_scale` (bench/content.py, 5-fold: en 0.25, ja 1.0 best).
ALPHA = {"ja": 1.0, "en": 0.25}

_DIGIT = re.compile("[1-9]")
_EN_WORD = re.compile(r"[a-z0$%#£€]+(?:['\u2019][a-z]+)?")
_NOT_WORD = r"(?:[^a-z0$%#£€'\u2019]+)"


def prepare(text: str) -> str:
    """What features are read from: digits folded to 0 (a price is a price whatever the figure), same length
    as ``text`` so spans stay valid. ``text`` must already be NFKC-normalised and ASCII-lowercased."""
    return _DIGIT.sub("0", text)  # re.sub: str.translate is slow on non-ASCII text


def features(unit: str, language: str) -> set[str]:
    """The features of ``unit`` (prepared text). Built with C-level map/zip: the check reads every sentence
    of every mail, and a 2,000-character item must stay well under 5 ms (bench/content.py)."""
    if language == "ja":
        # Character 2- and 3-grams over the text without whitespace: Japanese has no word boundaries, and
        # a hard line wrap or a space inside a phrase must not change its features.
        s = "".join(unit.split())
        grams = list(map(str.__add__, s, s[1:]))
        out = set(grams)
        out.update(map(str.__add__, grams, s[2:]))  # a 3-gram is a 2-gram plus a character: one new string
        return out
    words = [w.replace("\u2019", "'") for w in _EN_WORD.findall(unit)]
    out = set(words)
    out.update(map(" ".join, itertools.pairwise(words)))
    out.update(f"{a} _ {c}" for a, c in zip(words, words[2:], strict=False))  # "book a demo" ~ "book your demo"
    # Character 5-grams inside each word, its edges marked by spaces (" refer", "grade", "-off "): they reach
    # the forms and compounds a word list has not seen (referral/referring, upgrades). Only inside words and
    # only 5-grams: the 3- to 5-grams across words of session 5 were three times as many features (the cost
    # of an English item) for no better held-out figure (bench/content.py). No stemming either: it read
    # "enrolled" (news) as "enroll" (a call to action) and was no better on held-out folds.
    out.update(*map(_word_grams, set(words)))
    return out


@functools.lru_cache(maxsize=65536)
def _word_grams(word: str) -> tuple[str, ...]:
    """The character 5-grams of `` word `` as features ("#" + gram); cached, as words repeat."""
    t = f" {word} "
    return tuple("#" + t[i : i + 5] for i in range(len(t) - 4))


def _alternatives(pattern: str) -> list[str]:
    """The top-level alternatives of a regex (``|`` outside groups and character classes)."""
    out, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]" or pattern[i + 1 : i + 3] == "^]":  # a "]" first is a literal
                i += 2 if pattern[i + 1] == "]" else 3
                continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            out.append(pattern[start:i])
            start = i + 1
        i += 1
    out.append(pattern[start:])
    return out


def cue_pattern(patterns: Iterable[str]) -> str:
    """One alternation for a cue's patterns, with the alternatives that start at a word boundary grouped
    behind one ``\\b``: Python's ``re`` then tries them only where a word starts. A single alternative
    without it ('% off' among 18 ``\\b`` words) made the scan try every branch at every position, 15 times
    slower (an English cue alone took over 1 ms of a 2,000-character item). The same alternatives match; only
    which of two overlapping ones wins may differ, which the trained weights absorb."""
    bounded: list[str] = []
    other: list[str] = []
    for p in patterns:
        for alt in _alternatives(p):
            (bounded if alt.startswith("\\b") else other).append(alt[2:] if alt.startswith("\\b") else alt)
    parts = ([f"\\b(?:{'|'.join(bounded)})"] if bounded else []) + [f"(?:{alt})" for alt in other]
    return "|".join(parts)


@functools.lru_cache(maxsize=2)
def cues(language: str) -> dict[str, re.Pattern[str]]:
    """The cue patterns of ``language`` from cues.toml, one compiled alternation per cue name."""
    data = tomllib.loads(CUES_FILE.read_text("utf-8")).get(language, {})
    return {name: re.compile(cue_pattern(patterns)) for name, patterns in sorted(data.items())}


def cue_features(unit: str, language: str) -> set[str]:
    """``cue:NAME`` for each cue found in ``unit`` (prepared text), and ``cue:A&B`` for each pair of them."""
    return cue_pairs(name for name, pattern in cues(language).items() if pattern.search(unit))


def cue_hits(text: str, language: str) -> list[tuple[int, str]]:
    """(position, cue name) of every cue match in ``text``: one scan per cue for a whole mail, which the
    check then splits by sentence (searching each sentence for each cue cost more than the n-grams)."""
    return sorted((m.start(), name) for name, pattern in cues(language).items() for m in pattern.finditer(text))


def cue_pairs(names: Iterable[str]) -> set[str]:
    """The cue features of a unit in which the cues ``names`` occur (a new set: the caller adds rule hits)."""
    return set(_cue_pairs(frozenset(names)))


@functools.lru_cache(maxsize=4096)
def _cue_pairs(names: frozenset[str]) -> frozenset[str]:
    # Cached: the same few combinations of cues recur in every mail, and building their pair names was a
    # tenth of the model's time on a 2,000-character item.
    found = sorted(names)
    out = {f"cue:{name}" for name in found}
    out.update(f"cue:{a}&{b}" for i, a in enumerate(found) for b in found[i + 1 :])
    return frozenset(out)


def locate(unit: str, feature: str, language: str) -> tuple[int, int]:
    """Where ``feature`` first occurs in ``unit`` (prepared text); (0, 0) if it cannot be found."""
    if feature.startswith("rule:"):
        return 0, 0
    if feature.startswith("cue:"):
        pattern = cues(language).get(feature[4:].split("&")[0])
        m = pattern.search(unit) if pattern is not None else None
        return m.span() if m else (0, 0)
    if language == "ja":
        at = unit.find(feature)
        if at >= 0:
            return at, at + len(feature)
        index = [i for i, c in enumerate(unit) if not c.isspace()]  # the gram spans a space
        at = "".join(unit[i] for i in index).find(feature)
        return (index[at], index[at + len(feature) - 1] + 1) if at >= 0 else (0, 0)
    if feature.startswith("#"):  # characters of words joined by single spaces: a space is any non-word run
        m = _locator(feature).search(f" {unit} ")
        return (max(m.start() - 1, 0), min(m.end() - 1, len(unit))) if m else (0, 0)
    m = _locator(feature).search(unit)
    return m.span() if m else (0, 0)


@functools.lru_cache(maxsize=4096)
def _locator(feature: str) -> re.Pattern[str]:
    """The pattern :func:`locate` finds an English feature with (cached: building it cost more than the
    search, and every finding locates its sentence's strongest features)."""
    if feature.startswith("#"):
        return re.compile("".join(re.escape(c) if c != " " else _NOT_WORD for c in feature[1:]))
    parts = [r"\S+" if w == "_" else re.escape(w).replace("'", "['\u2019]") for w in feature.split(" ")]
    return re.compile(r"(?<![a-z0])" + r"\s+".join(parts) + r"(?![a-z0])")


@dataclass(frozen=True)
class Evidence:
    """One feature's contribution to a unit's score: ``weight`` (after length normalisation) and where."""

    feature: str
    weight: float
    start: int
    end: int


@dataclass(frozen=True)
class Score:
    probability: float
    evidence: tuple[Evidence, ...]  # the strongest contributions first, positive and negative

    @property
    def pitch(self) -> bool:
        return self.probability >= THRESHOLD


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0


@dataclass
class PitchModel:
    """Weights of one language: n-grams (scaled by 1/sqrt(number of n-grams in the unit), so a long sentence
    does not add up by length) and dense features (``cue:...`` and ``rule:<id>``, counted once each)."""

    language: str
    bias: float
    weights: dict[str, float]
    #: From this probability a sentence or paragraph with an offer cue fails the check on the model alone;
    #: below ``veto_below`` a shipped rule's error in that sentence is only a warning. Both are chosen by
    #: inner cross-validation inside the training items (nurture.checks.fit), never on held-out text.
    error_at: float = ERROR_AT
    veto_below: float = VETO_BELOW
    #: ``error_at`` for a whole mail (more than MAIL_SENTENCES sentences): a mail of 30 sentences gives the
    #: model 30 chances to misread one, so its threshold is chosen on mails composed inside the training data.
    mail_error_at: float = ERROR_AT

    def dense(self, unit: str, rule_ids: Iterable[str] = ()) -> set[str]:
        """The dense features of ``unit`` (prepared text) given the shipped rules that hit it."""
        return cue_features(unit, self.language) | {f"rule:{r}" for r in rule_ids}

    def score(self, unit: str, rule_ids: Iterable[str] = (), *, top: int = 6) -> Score:
        """The pitch probability of ``unit`` (NFKC, ASCII-lowercased) with the evidence located in it."""
        prepared = prepare(unit)
        feats = features(prepared, self.language)
        return self.score_features(feats, self.dense(prepared, rule_ids), top=top, text=prepared)

    def probability_of(self, count: int, weights: Iterable[float], dense: Iterable[str]) -> float:
        """The pitch probability of a unit of ``count`` n-grams whose known ones weigh ``weights`` (looked up
        once by the caller), with its dense features ``dense``: no evidence, the fast path."""
        norm = 1.0 / math.sqrt(count) if count else 0.0
        return _sigmoid(self.bias + norm * sum(weights) + sum(filter(None, map(self.weights.get, dense))))

    def score_features(
        self,
        feats: set[str],
        dense: set[str],
        *,
        top: int = 6,
        text: str = "",
        offset: int = 0,
    ) -> Score:
        """The probability with its evidence: the ``top`` strongest contributions, located in ``text`` and
        shifted by ``offset`` (a rule feature has no span of its own: (offset, offset))."""
        found = list(map(self.weights.get, feats))
        names, sparse = list(itertools.compress(feats, found)), list(filter(None, found))
        return self.score_known(len(feats), names, sparse, dense, top=top, text=text, offset=offset)

    def score_known(
        self,
        count: int,
        names: Sequence[str],
        sparse: Sequence[float],
        dense: Iterable[str],
        *,
        top: int = 6,
        text: str = "",
        offset: int = 0,
    ) -> Score:
        """:meth:`score_features` of a unit of ``count`` n-grams whose known ones are ``names``, weighing
        ``sparse``."""
        weights = self.weights
        norm = 1.0 / math.sqrt(count) if count else 0.0
        dense_names = list(filter(weights.__contains__, dense))
        dense_weights = list(map(weights.__getitem__, dense_names))
        total = self.bias + norm * sum(sparse) + sum(dense_weights)
        # Every finding shows its sentence's evidence, so this runs once per flagged sentence. The ``top``
        # strongest n-grams are among the ``top`` lowest and highest weights (norm > 0 keeps the order): one
        # C-level sort of floats finds those values, and only the n-grams that carry them (ties included,
        # ordered by name) become tuples, instead of one tuple per n-gram of the unit.
        ordered = sorted(sparse)
        extremes = set(ordered[:top] + ordered[-top:])
        picked = itertools.compress(zip(names, sparse, strict=True), map(extremes.__contains__, sparse))
        ranked = [(-abs(w * norm), f, w * norm) for f, w in picked]
        ranked += [(-abs(w), f, w) for f, w in zip(dense_names, dense_weights, strict=True)]
        ranked.sort()
        evidence: list[Evidence] = []
        ja = self.language == "ja"
        for _, f, w in ranked[:top]:
            if not text:
                start = end = 0
            elif ja and not f.startswith(("rule:", "cue:")) and (at := text.find(f)) >= 0:
                start, end = at, at + len(f)  # locate()'s first case, without its call
            else:
                start, end = locate(text, f, self.language)
            evidence.append(Evidence(f, round(w, 4), start + offset, end + offset))
        return Score(_sigmoid(total), tuple(evidence))

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "language": self.language,
            "bias": self.bias,
            "error_at": self.error_at,
            "veto_below": self.veto_below,
            "mail_error_at": self.mail_error_at,
            "weights": self.weights,
        }


def nb_scale(docs: Iterable[tuple[Iterable[str], bool]], alpha: float) -> dict[str, float]:
    """Per n-gram, |log-count ratio| between pitches and information (Wang & Manning 2012, "NBSVM"): how
    much more often the n-gram occurs in one class than the other, with ``alpha`` added to every count.
    The logistic regression then learns on inputs scaled by it, so a gram seen in a few pitches and no
    information starts ahead of one seen in both; on 800 items per language this gave better held-out
    figures than the plain inputs (bench/content.py)."""
    counts: dict[str, list[int]] = {}
    totals = [0, 0]
    for feats, label in docs:
        totals[label] += 1
        for f in feats:
            counts.setdefault(f, [0, 0])[label] += 1
    neg_total, pos_total = (t + 2 * alpha for t in totals)
    return {
        f: abs(math.log((pos + alpha) / pos_total) - math.log((neg + alpha) / neg_total))
        for f, (neg, pos) in counts.items()
    }


def train(
    docs: Sequence[tuple[str, bool, Iterable[str]]],
    language: str,
    *,
    epochs: int = 12,
    rate: float | None = None,
    l2: float = 1e-4,
    l2_dense: float = 3e-3,
    seed: int = 14,
    keep: int = 40000,
    alpha: float | None = None,
) -> PitchModel:
    """A model from ``docs``: (prepared text, is_pitch, ids of shipped rules that hit it). Deterministic for
    a given seed. ``keep`` bounds the exported vocabulary (strongest weights kept). Cues, their pairs and rule
    hits (``l2_dense``) are regularised harder than n-grams: there are few of them, each counts in full, and
    an unregularised pair weight made the model overconfident on long informational sentences."""
    # AdaGrad's base step: English learns better with a smaller one (bench/content.py; Japanese is worse
    # with it).
    rate = RATE.get(language, 0.5) if rate is None else rate
    alpha = ALPHA.get(language, 0.5) if alpha is None else alpha
    prepared_docs = []
    for text, label, rule_ids in docs:
        prepared = prepare(text)
        sparse = sorted(features(prepared, language))
        dense = sorted(cue_features(prepared, language) | {f"rule:{r}" for r in rule_ids})
        prepared_docs.append((sparse, dense, bool(label)))
    scale = nb_scale(((sparse, label) for sparse, _, label in prepared_docs), alpha)
    vectors = []
    for sparse, dense, label in prepared_docs:
        norm = 1.0 / math.sqrt(len(sparse)) if sparse else 0.0
        vectors.append(
            ([(f, norm * scale[f], l2) for f in sparse] + [(f, 1.0, l2_dense) for f in dense], 1.0 if label else 0.0)
        )
    positives = sum(y for _, y in vectors) or 1.0
    negatives = (len(vectors) - positives) or 1.0
    class_weight = {1.0: len(vectors) / (2 * positives), 0.0: len(vectors) / (2 * negatives)}
    weights: dict[str, float] = {}
    squares: dict[str, float] = {}
    bias, bias_square = 0.0, 1e-8
    order = list(range(len(vectors)))
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(order)
        for index in order:
            feats, y = vectors[index]
            z = bias + sum(weights.get(f, 0.0) * v for f, v, _ in feats)
            g = (_sigmoid(z) - y) * class_weight[y]
            for f, v, reg in feats:
                w = weights.get(f, 0.0)
                grad = g * v + reg * w
                sq = squares.get(f, 1e-8) + grad * grad
                squares[f] = sq
                weights[f] = w - rate * grad / math.sqrt(sq)
            bias_square += g * g
            bias -= rate * g / math.sqrt(bias_square)
    # The n-gram weights are learnt on scaled inputs; the shipped weight is the product, so scoring and
    # evidence stay a plain sum of weights.
    weights = {f: w * scale[f] if f in scale else w for f, w in weights.items()}
    strongest = sorted(weights.items(), key=lambda kv: -abs(kv[1]))[:keep]
    return PitchModel(language, round(bias, 5), {f: round(w, 5) for f, w in strongest if abs(w) >= 1e-4})


def read_corpus(language: str, corpus_dir: Path = CORPUS_DIR) -> list[dict[str, str]]:
    """The labelled items of ``language``: dicts with id, label (salesy | informational), class, industry,
    text. Raises ValueError naming file and line for a bad row."""
    path = corpus_dir / f"items-{language}.jsonl"
    rows = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if row.get("label") not in ("salesy", "informational") or not row.get("text"):
            raise ValueError(f"{path}:{number}: needs label salesy|informational and text")
        rows.append(row)
    return rows


@functools.lru_cache(maxsize=4)
def _load(path: str) -> dict[str, PitchModel]:
    data = json.loads(Path(path).read_text("utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: model format {data.get('format')!r}, expected {FORMAT}; retrain it")
    return {
        lang: PitchModel(
            lang,
            float(m["bias"]),
            {str(k): float(v) for k, v in m["weights"].items()},
            float(m["error_at"]),
            float(m["veto_below"]),
            float(m["mail_error_at"]),
        )
        for lang, m in data["models"].items()
    }


def load_model(path: Path | str = MODEL_FILE) -> dict[str, PitchModel]:
    """The shipped models by language, read once per process; {} when the file is absent."""
    return _load(str(path)) if Path(path).exists() else {}


def sources_digest(corpus_dir: Path = CORPUS_DIR) -> str:
    """SHA-256 over what the shipped model is trained from (corpus, cues, shipped rules): a test compares it
    with the one saved in model.json, so an edit without retraining is caught."""
    from nurture.checks.rules import builtin_rule_files

    digest = hashlib.sha256()
    for path in [*sorted(corpus_dir.glob("items-*.jsonl")), CUES_FILE, *builtin_rule_files()]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def saved_digest(path: Path = MODEL_FILE) -> str:
    return str(json.loads(path.read_text("utf-8")).get("sources", ""))


def save(models: dict[str, PitchModel], path: Path = MODEL_FILE) -> None:
    data = {
        "format": FORMAT,
        "sources": sources_digest(),
        "note": "trained by `python bench/content.py --write-model` from tests/checks/corpus/items-*.jsonl",
        "models": {
            lang: {
                "bias": m.bias,
                "error_at": m.error_at,
                "veto_below": m.veto_below,
                "mail_error_at": m.mail_error_at,
                "weights": m.weights,
            }
            for lang, m in sorted(models.items())
        },
    }
    path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n", "utf-8")
    _load.cache_clear()
