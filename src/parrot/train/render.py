"""One function turns a chat into token ids and loss labels: :func:`render_chat`.

It uses the tokenizer's own chat template and needs no ``{% generation %}`` markers (SmolLM2's
template has none). The template renders every prefix of the chat; each message's text is the
difference between consecutive prefixes, so the rendering of a history plus the generation
prompt must be a prefix of the full rendering (checked: a template that breaks it is an error,
since masking would be guesswork). The whole text is then tokenized once, exactly as at
inference, and character offsets decide which tokens carry the loss:

- a *target* message (``target="assistant"`` for the chat model; the simulator uses the same
  after the role swap) trains on its content and its end-of-turn token: the tokens from the
  end of its role header up to and including the last special token of the turn
  (``<|im_end|>`` for SmolLM2); the newline the template writes after it does not;
- everything else (system prompt, other roles, role headers) has label ``-100``.

A session longer than ``max_length`` tokens is shortened, never dropped: :func:`render_examples`
splits it at turn boundaries into examples. The first trains as many turns as fit; each later
one trains the next turns (as many as fit in half of ``max_length``, at least one) and carries,
untrained, as much of the conversation before them as fits in the rest, by the rule of
:mod:`parrot.core.shorten` (oldest whole turns go first; a turn alone over the budget has its
question cut, keeping its end). So a late, context-dependent turn is trained with the context
it depends on, every target turn is trained exactly once, and one whose own message cannot fit
is dropped and counted.

>>> from parrot.core.tokens import load_tokenizer
>>> tok = load_tokenizer("smollm2")                    # the embedded SmolLM2 tokenizer
>>> r = render_chat(tok, [{"role": "user", "content": "Hi"},
...                       {"role": "assistant", "content": "Hello!"}])
>>> tok.decode([t for t, l in zip(r.input_ids, r.labels) if l != -100])
'Hello!<|im_end|>'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from parrot import ParrotError
from parrot.core.shorten import flatten, shorten, split_turns
from parrot.core.tokens import count_tokens

IGNORE = -100


@dataclass
class Rendered:
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    messages_kept: int = 0  # messages whose tokens are in input_ids
    messages_total: int = 0
    drop: str | None = None  # "no_target" when nothing trainable is left
    message_ends: list[int] = field(default_factory=list)  # per message of the whole chat, tokens up to its end

    @property
    def trainable_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def _template(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def message_spans(tokenizer, messages: list[dict], target: str) -> tuple[str, list[tuple[int, int, int, bool]]]:
    """The full rendering and, per message, ``(start, body_start, end, is_target)`` in characters.

    ``body_start`` is where a target message's content starts (after its role header).
    Raises ParrotError when the template does not render prefixes as prefixes.
    """
    spans = []
    prev = ""
    for i, msg in enumerate(messages):
        body_start = len(prev)
        is_target = msg["role"] == target
        if is_target:
            header = _template(tokenizer, messages[:i], generation_prompt=True) if i else ""
            if i and not header.startswith(prev):
                raise _prefix_error(tokenizer, i, "the history plus the generation prompt")
            body_start = len(header)
        text = _template(tokenizer, messages[: i + 1])
        if not text.startswith(prev) or len(text) < body_start or (is_target and i and not text.startswith(header)):
            raise _prefix_error(tokenizer, i, "the history")
        spans.append((len(prev), body_start, len(text), is_target))
        prev = text
    return prev, spans


def _prefix_error(tokenizer, index: int, what: str) -> ParrotError:
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    return ParrotError(
        f"{name}: the chat template renders {what} before message {index} differently from "
        "the start of the full conversation, so turns cannot be masked from prefixes; use a "
        "template whose renderings of prefixes are prefixes (pass chat_template_path=...)"
    )


def _special_ids(tokenizer) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids.update(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return ids


def render_chat(tokenizer, messages: list[dict], *, target: str = "assistant", context: int = 0) -> Rendered:
    """Token ids and labels (loss on ``target`` turns + their end-of-turn token) for one chat.

    ``messages`` is an ordinary chat (already role-swapped for the simulator); its first
    ``context`` messages are history, never trained. Needs a fast tokenizer (character offsets)
    with a chat template. Trailing messages that carry no loss are left out.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ParrotError(
            f"{getattr(tokenizer, 'name_or_path', 'tokenizer')}: masking needs a fast tokenizer (tokenizer.json)"
        )
    text, spans = message_spans(tokenizer, messages, target)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    special = _special_ids(tokenizer)
    labels = [IGNORE] * len(ids)
    ends: list[int] = []  # per message, the number of tokens up to its end
    tok = 0
    for i, (start, body_start, end, is_target) in enumerate(spans):
        first = tok
        while tok < len(ids) and offsets[tok][0] < end:
            tok += 1
        ends.append(tok)
        if not is_target or i < context:
            continue
        body = [j for j in range(first, tok) if offsets[j][0] >= body_start]
        # the turn ends with its last special token (end-of-turn); what follows is template glue
        stop = max((j for j in body if ids[j] in special), default=body[-1] if body else None)
        for j in body:
            if j > stop:
                break
            labels[j] = ids[j]
    keep = len(spans)
    while keep and not (spans[keep - 1][3] and keep > context):  # trailing messages carry no loss
        keep -= 1
    out = Rendered(messages_total=len(messages), message_ends=ends)
    if not keep:
        out.drop = "no_target"
        return out
    n = ends[keep - 1]
    out.input_ids, out.labels, out.messages_kept = ids[:n], labels[:n], keep
    return out


def render_examples(
    tokenizer,
    messages: list[dict],
    *,
    target: str = "assistant",
    max_length: int | None = None,
    counts: dict | None = None,
) -> list[Rendered]:
    """The training examples of one chat: the whole chat when it fits ``max_length``, else runs
    of consecutive turns with shortened history (see the module docstring), every target turn
    trained once. ``counts`` gets ``sessions_shortened``, ``turns_dropped`` (history turns left
    out, summed over examples), ``messages_cut`` and ``turns_too_long``.
    """
    whole = render_chat(tokenizer, messages, target=target)
    if whole.drop or max_length is None or len(whole.input_ids) <= max_length:
        return [] if whole.drop else [whole]
    counts = {} if counts is None else counts
    counts["sessions_shortened"] = counts.get("sessions_shortened", 0) + 1
    head, turns = split_turns(messages)
    while turns and not any(m["role"] == target for m in turns[-1]):
        turns.pop()  # a last turn with nothing to train (an unanswered question)

    fits = _Budget(tokenizer, whole, head, turns, max_length)
    half = _Budget(tokenizer, whole, head, turns, max_length // 2)  # later examples keep half for history
    examples, i = [], 0
    while i < len(turns):
        j = max(i + 1, _most_turns_that_fit(head, turns, i, fits if i == 0 else half))
        got = shorten(head + flatten(turns[:j]), fits, keep=j - i)
        if got is not None and not fits.exactly(got[0]):  # the estimate was off: search exactly
            got = shorten(head + flatten(turns[:j]), fits.exactly, keep=j - i)
        if got is None:
            counts["turns_too_long"] = counts.get("turns_too_long", 0) + 1
        else:
            msgs, how = got
            how.count_in(counts)
            trained = len(flatten(turns[i:j]))
            examples.append(render_chat(tokenizer, msgs, target=target, context=len(msgs) - trained))
        i = j
    return [r for r in examples if not r.drop]


class _Budget:
    """Does a window of a session's turns fit ``limit`` tokens? Estimated from the whole chat's
    rendering (per-message token counts add up at message boundaries, which special tokens
    separate), so a long session is not rendered again for every candidate window; the chosen
    window is then checked :meth:`exactly`. A window holding a cut message is counted exactly."""

    def __init__(self, tokenizer, whole: Rendered, head: list[dict], turns: list[list[dict]], limit: int):
        self.tokenizer, self.limit, self.ends = tokenizer, limit, whole.message_ends
        self.head = len(head)
        # what precedes the first turn: the system message, or the template's own preamble
        self.preamble = self.ends[self.head - 1] if head else _preamble_tokens(tokenizer)
        self.position = {id(m): i for i, m in enumerate(head + flatten(turns))}

    def __call__(self, msgs: list[dict]) -> bool:
        first, last = (
            (self.position.get(id(msgs[self.head])), self.position.get(id(msgs[-1])))
            if len(msgs) > self.head
            else (None, None)
        )
        if first is None or last is None:
            return self.exactly(msgs)
        if first == self.head:  # a prefix of the whole chat: counted exactly already
            return self.ends[last] <= self.limit
        return self.preamble + self.ends[last] - self.ends[first - 1] <= self.limit

    def exactly(self, msgs: list[dict]) -> bool:
        return count_tokens(self.tokenizer, msgs) <= self.limit


def _preamble_tokens(tokenizer) -> int:
    """Tokens a chat template writes before the first message (SmolLM2's default system prompt)."""
    pair = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    return 2 * count_tokens(tokenizer, pair) - count_tokens(tokenizer, pair + pair)


def _most_turns_that_fit(head: list[dict], turns: list[list[dict]], i: int, fits) -> int:
    """The largest ``j`` with ``head + turns[i:j]`` fitting (``i`` when not even turn ``i`` does)."""
    lo, hi = i, len(turns)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(head + flatten(turns[i:mid])):
            lo = mid
        else:
            hi = mid - 1
    return lo
