"""Cleaning rules, one behaviour each: roles, HTML, empty/merge/leading-assistant, exchanges,
turns, tokens, language, duplicates, rejoining split pieces."""

from collections import Counter

import pytest

from parrot import ParrotError
from parrot.prepare.cleaning import (
    Cleaner,
    CleanOptions,
    Conversation,
    cut_to_tokens,
    detect_language,
    html_to_markdown,
    looks_like_scraped_html,
    normalize_role,
    rejoin_pieces,
)


def conv(*pairs, id="c", meta=None):
    return Conversation(id, [{"role": r, "content": c} for r, c in pairs], dict(meta or {}))


def contents(c):
    return [(m["role"], m["content"]) for m in c.messages]


@pytest.mark.parametrize(
    "raw, role",
    [
        ("human", "user"),
        ("USER", "user"),
        ("gpt", "assistant"),
        ("chatgpt", "assistant"),
        ("bing", "assistant"),
        ("bard", "assistant"),
        ("assistant", "assistant"),
        ("system", "system"),
    ],
)
def test_roles_are_normalised(raw, role):
    assert normalize_role(raw, "w") == role


def test_unknown_role_is_an_error_naming_the_place():
    with pytest.raises(ParrotError, match=r"f.json record 2: message 1: unknown role 'robot' \(expected one of"):
        normalize_role("robot", "f.json record 2: message 1")


SCRAPED = (
    '<div class="markdown prose w-full break-words dark:prose-invert light"><p>Use this &amp; '
    'that:</p><pre><div class="bg-black"><div class="flex"><span>python</span><button class="flex">'
    '<svg><path d="M1"></path></svg>Copy code</button></div><div class="p-4"><code class="!whitespace-pre '
    'hljs language-python"><span class="hljs-keyword">def</span> f(a_b):\n    return a_b &lt; 2 * 3\n'
    "</code></div></div></pre><ul><li>one_two</li><li><strong>bold</strong></li></ul></div>"
)


def test_scraped_html_becomes_markdown_and_code_survives_exactly():
    md = html_to_markdown(SCRAPED)
    assert "```python\ndef f(a_b):\n    return a_b < 2 * 3\n```" in md
    assert md.startswith("Use this & that:")
    assert "- one_two" in md and "**bold**" in md
    assert "Copy code" not in md and "<" not in md.replace("a_b < 2", "")


def test_pasted_html_code_is_not_converted():
    pasted = '<div class="modal fade" id="m">\n  <p>Hi</p>\n</div>'
    page = "<p>x</p>\n<script>alert(1)</script>\n<p>y</p>"
    fenced = "<p>Here:</p>\n```html\n<p>x</p>\n```\n<p>done</p>"
    assert looks_like_scraped_html(SCRAPED) and looks_like_scraped_html("<p>Hello <b>there</b></p>")
    assert not any(looks_like_scraped_html(t) for t in (pasted, page, fenced, "Fix this: <div>a</div>"))
    c = Cleaner(CleanOptions())
    out = c.clean(conv(("user", pasted), ("assistant", SCRAPED)))
    assert out.messages[0]["content"] == pasted
    assert c.changes["html_converted"] == 1


def test_html_conversion_can_be_turned_off():
    out = Cleaner(CleanOptions(html=False)).clean(conv(("user", "q"), ("assistant", SCRAPED)))
    assert out.messages[1]["content"] == SCRAPED


def test_empty_messages_are_dropped_and_counted():
    c = Cleaner(CleanOptions())
    out = c.clean(conv(("user", "q"), ("assistant", "  \n"), ("assistant", "a"), ("user", "")))
    assert contents(out) == [("user", "q"), ("assistant", "a")]
    assert c.changes["empty_message"] == 2


def test_consecutive_messages_of_one_role_are_merged():
    c = Cleaner(CleanOptions())
    out = c.clean(conv(("user", "a"), ("user", "b"), ("assistant", "x"), ("assistant", "y"), ("user", "c")))
    assert contents(out) == [("user", "a\n\nb"), ("assistant", "x\n\ny"), ("user", "c")]
    assert c.changes["merged_message"] == 2


def test_leading_assistant_messages_are_dropped():
    c = Cleaner(CleanOptions())
    out = c.clean(conv(("system", "be nice"), ("assistant", "...rest"), ("user", "q"), ("assistant", "a")))
    assert contents(out) == [("system", "be nice"), ("user", "q"), ("assistant", "a")]
    assert c.changes["leading_assistant"] == 1


def test_system_is_kept_only_first():
    c = Cleaner(CleanOptions())
    out = c.clean(conv(("user", "q"), ("system", "late"), ("assistant", "a")))
    assert contents(out) == [("user", "q"), ("assistant", "a")]
    assert c.changes["misplaced_system"] == 1
    c = Cleaner(CleanOptions(keep_system=False))
    assert contents(c.clean(conv(("system", "s"), ("user", "q"), ("assistant", "a")))) == [
        ("user", "q"),
        ("assistant", "a"),
    ]


@pytest.mark.parametrize(
    "pairs, reason",
    [
        ((), "empty"),
        ((("user", " "), ("assistant", "")), "empty"),
        ((("user", "only a question"),), "no_exchange"),
        ((("assistant", "a reply to nothing"), ("assistant", "more")), "no_exchange"),
        ((("system", "s"), ("user", "q")), "no_exchange"),
    ],
)
def test_sessions_without_an_exchange_are_dropped(pairs, reason):
    c = Cleaner(CleanOptions())
    assert c.clean(conv(*pairs)) is None
    assert c.dropped == Counter({reason: 1})


def test_trailing_user_question_is_kept():
    out = Cleaner(CleanOptions()).clean(conv(("user", "q"), ("assistant", "a"), ("user", "and?")))
    assert [m["role"] for m in out.messages] == ["user", "assistant", "user"]


def test_exact_duplicates_are_dropped_after_cleaning():
    c = Cleaner(CleanOptions())
    assert c.clean(conv(("user", "q"), ("assistant", "a"), id="1"))
    assert c.clean(conv(("user", " q "), ("assistant", "a\n"), id="2")) is None
    assert c.clean(conv(("user", "q"), ("assistant", "b"), id="3"))
    assert c.dropped == Counter({"duplicate": 1})
    assert Cleaner(CleanOptions(dedupe=False)).clean(conv(("user", "q"), ("assistant", "a")))


def test_min_and_max_turns_filter_sessions():
    two = conv(("user", "q"), ("assistant", "a"), ("user", "q2"), ("assistant", "a2"))
    c = Cleaner(CleanOptions(min_turns=3))
    assert c.clean(two) is None and c.dropped["too_few_turns"] == 1
    c = Cleaner(CleanOptions(max_turns=1))
    assert c.clean(two) is None and c.dropped["too_many_turns"] == 1
    assert Cleaner(CleanOptions(min_turns=2, max_turns=2)).clean(two) is not None


class WordCounter:
    """One token per word: enough to check where the cut falls."""

    def count(self, texts):
        return [len(t.split()) for t in texts]


def test_cut_to_tokens_keeps_whole_turns():
    msgs = [
        {"role": "system", "content": "s s"},
        {"role": "user", "content": "u u u"},
        {"role": "assistant", "content": "a a a"},
        {"role": "user", "content": "v"},
        {"role": "assistant", "content": "b b b b"},
    ]
    lengths = [2, 3, 3, 1, 4]
    assert cut_to_tokens(msgs, lengths, 8) == msgs[:3]
    assert cut_to_tokens(msgs, lengths, 12) == msgs[:3]  # the second turn needs 5 more
    assert cut_to_tokens(msgs, lengths, 13) == msgs
    assert cut_to_tokens(msgs, lengths, 7) == []


def test_max_tokens_cuts_at_a_turn_boundary_or_drops():
    c = Cleaner(CleanOptions(max_tokens=5), token_counter=WordCounter())
    long = conv(("user", "one two"), ("assistant", "three four"), ("user", "five"), ("assistant", "six seven"))
    assert contents(c.clean(long)) == [("user", "one two"), ("assistant", "three four")]
    assert c.changes["cut_max_tokens"] == 1
    assert c.clean(conv(("user", "a b c"), ("assistant", "d e f"))) is None
    assert c.dropped["too_long"] == 1


def test_max_tokens_with_a_local_tokenizer_directory(smollm2_tokenizer_dir):
    from parrot.core.tokens import TokenCounter

    tc = TokenCounter(str(smollm2_tokenizer_dir))
    n = tc.count(["Hello world, how are you today?"])[0]
    assert 4 <= n <= 12
    c = Cleaner(CleanOptions(max_tokens=n + 3), token_counter=tc)
    out = c.clean(
        conv(
            ("user", "Hello world, how are you today?"),
            ("assistant", "Fine."),
            ("user", "And tomorrow? " * 20),
            ("assistant", "Also fine."),
        )
    )
    assert len(out.messages) == 2


def test_unknown_tokenizer_name_is_an_error():
    from parrot.core.tokens import TokenCounter

    with pytest.raises(ParrotError, match="no-such-tok: tokenizer not found"):
        TokenCounter("no-such-tok")


@pytest.mark.parametrize(
    "text, lang",
    [
        ("Please write me a poem about the sea and the wind.", "en"),
        ("¿Puedes escribir un poema sobre el mar y el viento para mi madre?", "es"),
        ("Kannst du bitte ein Gedicht über das Meer und den Wind schreiben?", "de"),
        ("Напиши стихотворение о море и ветре", "ru"),
        ("海と風についての詩を書いてください", "ja"),
        ("바다와 바람에 대한 시를 써 주세요", "ko"),
        ("```python\nprint(1)\n```", "und"),
    ],
)
def test_detect_language(text, lang):
    assert detect_language(text) == lang


def test_language_filter_drops_other_languages():
    c = Cleaner(CleanOptions(language=("en",)))
    assert c.clean(
        conv(("user", "What is the capital of France? Tell me about it."), ("assistant", "It is Paris, and it is big."))
    )
    assert (
        c.clean(
            conv(
                ("user", "Quelle est la capitale de la France ? Dis-moi tout."),
                ("assistant", "C'est Paris, et elle est très grande."),
            )
        )
        is None
    )
    assert c.dropped == Counter({"language": 1})


def pieces(*ids):
    return [
        conv(("assistant" if i else "user", f"{pid} part"), ("user", f"{pid} q"), ("assistant", f"{pid} a"), id=pid)
        for i, pid in enumerate(ids)
    ]


def test_rejoin_stitches_consecutive_pieces_in_order():
    changes = Counter()
    items = pieces("x_0", "x_1") + [conv(("user", "q"), ("assistant", "a"), id="other")] + pieces("x_2")[::-1]
    items[-1].id = "x_2"
    out = list(rejoin_pieces(iter(items), changes))
    joined = next(c for c in out if c.id == "x_0")
    assert joined.meta["pieces"] == ["x_0", "x_1", "x_2"]
    assert [m["content"] for m in joined.messages][:4] == ["x_0 part", "x_0 q", "x_0 a", "x_1 part"]
    assert {c.id for c in out} == {"x_0", "other"} and changes["rejoined_piece"] == 2


def test_rejoin_does_not_stitch_across_a_missing_piece_unless_asked():
    changes = Counter()
    out = list(rejoin_pieces(iter(pieces("y_0", "y_2")), changes))
    assert [c.id for c in out] == ["y_0", "y_2"] and changes["rejoin_gap"] == 1
    out = list(rejoin_pieces(iter(pieces("y_0", "y_2")), Counter(), across_gaps=True))
    assert [c.meta.get("pieces") for c in out] == [["y_0", "y_2"]]


def test_rejoin_window_bounds_how_far_apart_pieces_may_be():
    filler = [conv(("user", "q"), ("assistant", "a"), id=f"f{i}") for i in range(5)]
    a, b = pieces("z_0", "z_1")
    out = list(rejoin_pieces(iter([a, *filler, b]), Counter(), window=2))
    assert sum(1 for c in out if c.id.startswith("z_")) == 2
    out = list(rejoin_pieces(iter([a, *filler, b]), Counter(), window=10))
    assert sum(1 for c in out if c.id.startswith("z_")) == 1


def test_rejoined_pieces_merge_at_the_seam_and_alternate():
    c = Cleaner(CleanOptions())
    [joined] = rejoin_pieces(iter(pieces("w_0", "w_1")), c.changes)
    out = c.clean(joined)
    assert [m["role"] for m in out.messages] == ["user", "assistant", "user", "assistant"]
    assert out.messages[1]["content"] == "w_0 a\n\nw_1 part"


def test_max_tokens_counts_only_about_the_limit_on_long_sessions():
    class Recording(WordCounter):
        seen = 0

        def count(self, texts):
            Recording.seen += len(texts)
            return super().count(texts)

    c = Cleaner(CleanOptions(max_tokens=10), token_counter=Recording())
    turns = [p for i in range(500) for p in (("user", f"question number {i}"), ("assistant", f"answer {i}"))]
    out = c.clean(conv(*turns))
    assert len(out.messages) == 4  # 3 + 2 words a turn: two turns fit in 10
    assert Recording.seen < 100  # not the 1000 messages
