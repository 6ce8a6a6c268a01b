"""Cleaning real conversation logs into Dialogue messages, every change counted by reason.

The rules, in the order :meth:`Cleaner.clean` applies them to one conversation:

1. scraped HTML (ChatGPT pages: ``<div class="markdown prose">``, ``<p>``, ``<pre><code>``,
   entities) becomes markdown; code blocks keep their text and language;
2. messages are stripped; empty ones are dropped;
3. a system message is kept only at the start; consecutive messages of one role are merged;
4. leading assistant messages are dropped (pieces of split conversations start with one);
5. a session without a user -> assistant exchange is dropped;
6. optional: cut to ``max_tokens`` of a named tokenizer at a turn boundary, min/max turns,
   a language filter (:func:`detect_language`);
7. exact duplicates (same messages after cleaning) are dropped.

Roles are normalised while reading (:func:`normalize_role`); :func:`rejoin_pieces` stitches
split ShareGPT pieces (``X_0``, ``X_1``, ...) back together before cleaning.

>>> c = Cleaner(CleanOptions())
>>> conv = Conversation("a", [{"role": "assistant", "content": "...continued"},
...                           {"role": "user", "content": "Hi"}, {"role": "user", "content": "there"},
...                           {"role": "assistant", "content": "Hello!"}], {})
>>> [m["content"] for m in c.clean(conv).messages]
['Hi\\n\\nthere', 'Hello!']
>>> dict(c.changes)
{'merged_message': 1, 'leading_assistant': 1}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from parrot.core.config import opt
from parrot.core.dialogue import asked_turns
from parrot.core.tokens import TokenCounter

# ---------------------------------------------------------------- roles

ROLE_MAP = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "assistant": "assistant",
    "system": "system",
}


# A surrogate code point on its own (JSON allows "\ud83d"; UTF-8 cannot encode it).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def normalize_role(raw: str, where: str) -> str:
    """``human`` -> ``user``, ``gpt``/``chatgpt``/``bing``/``bard`` -> ``assistant`` (any case).

    An unknown role raises a ParrotError (reason ``unknown_role``) naming ``where``.
    """
    role = ROLE_MAP.get(raw.strip().lower())
    if role is None:
        from parrot.prepare.sources import RecordError

        raise RecordError(
            "unknown_role", f"{where}: unknown role {raw!r} (expected one of {', '.join(sorted(ROLE_MAP))})"
        )
    return role


@dataclass
class Conversation:
    id: str | None
    messages: list[dict]  # [{"role": "user"|"assistant"|"system", "content": str}]
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------- HTML

# ChatGPT page markup as scraped into ShareGPT: the reply is wrapped in a "markdown prose" div.
_SCRAPED_DIV = re.compile(r'^\s*<div\b[^>]*class="[^"]*\b(markdown|prose)\b', re.I)
# Bare block tags at both ends; page-level tags mean HTML a user pasted as code.
_BARE_BLOCK = re.compile(r"^\s*<(p|div|ol|ul|pre|h[1-6]|table|blockquote)>", re.I)
_BLOCK_END = re.compile(r"</(p|div|ol|ul|pre|h[1-6]|table|blockquote)>\s*$", re.I)
_PAGE_TAGS = re.compile(r"<(!doctype|html|head|body|script|style|form|input|\?php)\b", re.I)


def looks_like_scraped_html(text: str) -> bool:
    """Is this message page markup to convert (rather than HTML code to keep as is)?

    >>> looks_like_scraped_html('<div class="markdown prose"><p>Hi</p></div>')
    True
    >>> looks_like_scraped_html('<div class="modal fade" id="m">...</div>')
    False
    """
    if not text.lstrip().startswith("<"):
        return False
    if _SCRAPED_DIV.match(text):
        return True
    return bool(
        _BARE_BLOCK.match(text) and _BLOCK_END.search(text) and "```" not in text and not _PAGE_TAGS.search(text)
    )


def html_to_markdown(text: str) -> str:
    """Markdown from scraped HTML; ``<pre><code class="language-x">`` becomes a fenced block
    holding the code's exact text (the "Copy code" header ChatGPT pages put inside is dropped).

    >>> html_to_markdown('<p>Use <code>a_b</code> &amp; see:</p><pre><code class="language-py">x &lt; 1</code></pre>')
    'Use `a_b` & see:\\n\\n```py\\nx < 1\\n```'
    """
    from bs4 import BeautifulSoup
    from markdownify import MarkdownConverter

    soup = BeautifulSoup(text, "html.parser")
    for pre in soup.find_all("pre"):
        code = pre.find("code")
        if code is not None:
            classes = code.get("class") or []
            pre["data-lang"] = next((c[len("language-") :] for c in classes if c.startswith("language-")), "")
            code.extract()
            pre.clear()
            pre.append(code)
    for junk in soup.find_all(["button", "svg"]):
        junk.decompose()
    conv = MarkdownConverter(
        escape_underscores=False,
        escape_asterisks=False,
        escape_misc=False,
        heading_style="ATX",
        bullets="-",
        code_language_callback=lambda el: el.get("data-lang") or "",
    )
    md = conv.convert_soup(soup)
    return re.sub(r"\n{3,}", "\n\n", md).strip()


# ---------------------------------------------------------------- language

# A few dozen function words per language (written for this project); a text's language is the
# one whose words it uses most. Non-Latin scripts are told apart by their Unicode ranges.
_STOPWORDS = {
    "en": "the and of to is in that it you for with this are be on as can what how not have i my your was will do an or from please",
    "es": "el la los las que de y en es por para con una un del se lo como más pero su al está qué cómo puedes mi tu son este esta",
    "fr": "le la les et est des une un pour que qui dans pas vous je du en sur avec ce il au sont mais ou nous cette comment moi très",
    "de": "der die das und ist nicht ich sie es ein eine zu mit den dem von auf für auch sich wie was bitte kannst du oder wir sind bei aus nach",
    "pt": "o a os as que de e do da em um uma para com não é por mais dos das se como mas você ao na no seu sua isso está pode",
    "it": "il lo la gli le che di e è un una per con non del della sono mi ti come ma anche questo questa nel alla puoi cosa più",
    "nl": "de het een en van is dat niet ik je op te zijn met voor die er maar ook wat hoe kun jij dit naar bij wordt",
}
_WORD_LANGS: dict[str, tuple] = {}
for _lang, _words in _STOPWORDS.items():
    for _w in _words.split():
        _WORD_LANGS[_w] = _WORD_LANGS.get(_w, ()) + (_lang,)
# scripts that mostly name one language, by Unicode range
_SCRIPTS = [
    (re.compile(f"[{lo}-{hi}]"), lang)
    for lo, hi, lang in [
        ("\u0400", "\u04ff", "ru"),
        ("\u0370", "\u03ff", "el"),
        ("\u0590", "\u05ff", "he"),
        ("\u0600", "\u06ff", "ar"),
        ("\u0900", "\u097f", "hi"),
        ("\u0e00", "\u0e7f", "th"),
        ("\uac00", "\ud7af", "ko"),
        ("\u3040", "\u30ff", "ja"),
        ("\u4e00", "\u9fff", "zh"),
    ]
]
_LATIN = re.compile("[A-Za-z\u00c0-\u024f]")
_CODE = re.compile(r"```.*?(```|$)|`[^`\n]*`|https?://\S+", re.S)
_PUNCT = ".,;:!?¿¡()[]{}\"'«»“”‘’-"


def detect_language(text: str, sample: int = 1200) -> str:
    """An ISO 639-1 code (``en``, ``fr``, ``zh``...) or ``und`` when the text gives too little to tell.

    Code and URLs are ignored. Non-Latin scripts decide by majority of letters (Japanese when
    kana is present among Han characters); Latin text by function-word counts.

    >>> detect_language("Can you tell me what the weather is like in Paris?")
    'en'
    >>> detect_language("Peux-tu me dire quel temps il fait à Paris ? Je voudrais le savoir.")
    'fr'
    >>> detect_language("请帮我写一首关于春天的诗")
    'zh'
    """
    text = text[: sample * 4]
    if "`" in text or "http" in text:
        text = _CODE.sub(" ", text)
    text = text[:sample]
    if not text.isascii():
        letters = Counter({lang: len(rx.findall(text)) for rx, lang in _SCRIPTS})
        if sum(letters.values()) > len(_LATIN.findall(text)):
            if letters["ja"] and letters["ja"] >= 0.1 * (letters["ja"] + letters["zh"]):
                return "ja"
            return letters.most_common(1)[0][0]
    words = text.lower().split()
    scores: Counter = Counter()
    for w in words:
        for lang in _WORD_LANGS.get(w.strip(_PUNCT), ()):
            scores[lang] += 1
    if not scores:
        return "und"
    lang, best = scores.most_common(1)[0]
    # one or two function words in a code-heavy message decide nothing
    return lang if best >= 2 and best >= 0.05 * len(words) else "und"


# ---------------------------------------------------------------- tokens


def cut_to_tokens(messages: list[dict], lengths: list[int], max_tokens: int) -> list[dict]:
    """The longest prefix of whole turns (system, then user + reply pairs) within ``max_tokens``.

    Never cuts inside a message; returns ``[]`` when not even the first turn fits. ``lengths``
    may stop at the message that passes the limit.
    """
    total, keep = 0, 0
    i = 0
    if messages and messages[0]["role"] == "system":
        total, i = lengths[0], 1
        if total > max_tokens:
            return []
    while i < len(messages):
        j = i + 2 if i + 1 < len(messages) else i + 1  # a user message and its reply
        need = sum(lengths[i:j])
        if total + need > max_tokens:
            break
        total += need
        keep = i = j
    return messages[:keep] if keep else []


# ---------------------------------------------------------------- the cleaner


@dataclass
class CleanOptions:
    """The rules' settings; ``prepare`` takes them as they are (``--html``, ``--min-turns``...:
    :class:`~parrot.prepare.stage.PrepareConfig` inherits these fields)."""

    html: bool = opt(True, "convert scraped HTML (ChatGPT page markup) to markdown")
    keep_system: bool = opt(True, "keep a leading system message")
    min_turns: int = opt(1, "drop sessions with fewer user turns", min=1)
    max_turns: int | None = opt(None, "drop sessions with more user turns", min=1)
    max_tokens: int | None = opt(None, "cut sessions to this many content tokens, at a turn boundary", min=1)
    tokenizer: str = opt("smollm2", "tokenizer for --max-tokens: `smollm2` or a local tokenizer directory", digest=True)
    language: list[str] = opt(
        list, "keep only sessions in these languages (ISO 639-1: en fr zh ...; `und` for undetermined)"
    )
    dedupe: bool = opt(True, "drop exact duplicate sessions")


class Cleaner:
    """Applies the rules to one conversation at a time; counts ``changes`` (edits inside kept
    sessions) and ``dropped`` (whole sessions) by reason. Keeps an 8-byte hash per kept session
    for exact de-duplication."""

    def __init__(self, opts: CleanOptions, token_counter: TokenCounter | None = None):
        self.opts = opts
        self.changes: Counter = Counter()
        self.dropped: Counter = Counter()
        self._seen: set[int] = set()
        self.tokens = token_counter
        if opts.max_tokens and token_counter is None:
            self.tokens = TokenCounter(opts.tokenizer)

    def clean(self, conv: Conversation) -> Conversation | None:
        """The cleaned conversation, or None when it is dropped (the reason is counted)."""
        msgs = self._clean_messages(conv.messages)
        start = 1 if msgs and msgs[0]["role"] == "system" else 0
        if len(msgs) == start:
            return self._drop("empty")
        while len(msgs) > start and msgs[start]["role"] == "assistant":
            msgs.pop(start)
            self.changes["leading_assistant"] += 1
        if len(msgs) - start < 2:  # roles alternate from here: two messages are one exchange
            return self._drop("no_exchange")
        if self.opts.max_tokens:
            lengths = self._token_lengths(msgs)
            if sum(lengths) > self.opts.max_tokens:
                msgs = cut_to_tokens(msgs, lengths, self.opts.max_tokens)
                if len(msgs) - start < 2:
                    return self._drop("too_long")
                self.changes["cut_max_tokens"] += 1
        turns = asked_turns(msgs)
        if turns < self.opts.min_turns:
            return self._drop("too_few_turns")
        if self.opts.max_turns is not None and turns > self.opts.max_turns:
            return self._drop("too_many_turns")
        if self.opts.language:
            lang = detect_language("\n".join(m["content"] for m in msgs if m["role"] != "system"))
            if lang not in self.opts.language:
                return self._drop("language")
        if self.opts.dedupe:
            key = content_hash(msgs)
            if key in self._seen:
                return self._drop("duplicate")
            self._seen.add(key)
        return Conversation(conv.id, msgs, conv.meta)

    def _token_lengths(self, msgs: list[dict]) -> list[int]:
        """Token counts from the first message until the running total passes ``max_tokens``;
        what follows is cut anyway, so long sessions cost about ``max_tokens`` to count."""
        limit = self.opts.max_tokens
        cap = 16 * (limit + 1)  # a prefix this long is over the limit in any real tokenizer
        lengths: list[int] = []
        total = i = 0
        while i < len(msgs) and total <= limit:
            # one batch of messages long enough to pass what is left (~4 characters a token)
            j, chars = i, 0
            while j < len(msgs) and chars < 6 * (limit - total + 1):
                chars += min(len(msgs[j]["content"]), cap)
                j += 1
            counts = self.tokens.count([m["content"][:cap] for m in msgs[i:j]])
            for m, n in zip(msgs[i:j], counts):
                if len(m["content"]) > cap and total + n <= limit:
                    n = self.tokens.count([m["content"]])[0]
                lengths.append(n)
                total += n
                i += 1
                if total > limit:
                    break
        return lengths

    def _clean_messages(self, messages: list[dict]) -> list[dict]:
        """Broken unicode, HTML, strip, empty, system placement and merging: roles alternate afterwards."""
        out: list[dict] = []
        for m in messages:
            role, content = m["role"], m["content"]
            if _LONE_SURROGATE.search(content):  # half an emoji, cut by the logger: not writable as UTF-8
                content = _LONE_SURROGATE.sub("\ufffd", content)
                self.changes["invalid_unicode_replaced"] += 1
            if self.opts.html and looks_like_scraped_html(content):
                content = html_to_markdown(content)
                self.changes["html_converted"] += 1
            content = content.strip()
            if not content:
                self.changes["empty_message"] += 1
                continue
            if role == "system":
                if any(x["role"] != "system" for x in out):
                    self.changes["misplaced_system"] += 1
                    continue
                if not self.opts.keep_system:
                    self.changes["system_removed"] += 1
                    continue
            if out and out[-1]["role"] == role:
                out[-1]["content"] += "\n\n" + content
                self.changes["merged_message"] += 1
                continue
            out.append({"role": role, "content": content})
        return out

    def _drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        return None


def content_hash(messages: list[dict]) -> int:
    """A 64-bit hash of the messages, for exact de-duplication."""
    blob = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")


# ---------------------------------------------------------------- rejoining split pieces

_PIECE = re.compile(r"^(.+)_(\d+)$")


def rejoin_pieces(
    convs: Iterator[Conversation], changes: Counter, *, window: int = 1000, across_gaps: bool = False
) -> Iterator[Conversation]:
    """Stitch ShareGPT pieces ``X_0, X_1, ...`` of one conversation back together, in order.

    The joined session keeps the first piece's id and lists the pieces in ``meta["pieces"]``.
    Pieces are looked for within ``window`` records of each other (ShareGPT keeps them close, in
    order), so memory stays bounded. A missing piece (``X_0, X_2``) ends a session there unless
    ``across_gaps``: stitching across it would splice unrelated turns. Conversations whose id is
    not ``X_<n>`` pass through untouched.
    """
    pending: OrderedDict[str, list] = OrderedDict()  # base id -> [last index, {n: conv}]
    for index, conv in enumerate(convs):
        while pending and next(iter(pending.values()))[0] < index - window:
            yield from _join(pending.popitem(last=False)[1][1], changes, across_gaps)
        m = _PIECE.match(conv.id or "")
        if not m:
            yield conv
            continue
        base, n = m.group(1), int(m.group(2))
        group = pending.get(base)
        if group is not None and n in group[1]:  # the same id used again: another conversation
            yield from _join(pending.pop(base)[1], changes, across_gaps)
            group = None
        if group is None:
            group = pending[base] = [index, {}]
        group[0] = index
        group[1][n] = conv
        pending.move_to_end(base)
    while pending:
        yield from _join(pending.popitem(last=False)[1][1], changes, across_gaps)


def _join(pieces: dict[int, Conversation], changes: Counter, across_gaps: bool) -> Iterator[Conversation]:
    run: list[Conversation] = []
    last = None
    for n in sorted(pieces):
        if run and n != last + 1 and not across_gaps:
            changes["rejoin_gap"] += 1
            yield _stitch(run, changes)
            run = []
        run.append(pieces[n])
        last = n
    if run:
        yield _stitch(run, changes)


def _stitch(run: list[Conversation], changes: Counter) -> Conversation:
    if len(run) == 1:
        return run[0]
    changes["rejoined_piece"] += len(run) - 1
    first = run[0]
    meta = dict(first.meta, pieces=[c.id for c in run])
    return Conversation(first.id, [m for c in run for m in c.messages], meta)
