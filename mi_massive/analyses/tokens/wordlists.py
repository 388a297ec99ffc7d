"""Our own English function-word list and delimiter set, and the rules that map a token to a word group.

Function words are closed-class: articles/determiners, pronouns, prepositions, conjunctions,
auxiliary and modal verbs, negation and a few grammatical particles. Content words are open-class:
any other purely alphabetic whole word of at least two letters. Numbers, punctuation, sub-word
pieces and mixed tokens belong to neither group and are left out of the comparison.
"""

from __future__ import annotations

FUNCTION_WORDS: frozenset[str] = frozenset("""
a an the this that these those each every either neither some any no all both few many much more most
several such what which whose whatever whichever
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself
she her hers herself it its itself they them their theirs themselves one ones who whom whoever
about above across after against along amid among around as at before behind below beneath beside
besides between beyond by despite down during except for from in inside into like near of off on onto
out outside over past per since through throughout till to toward towards under underneath unlike until
up upon via with within without
and but or nor so yet because although though while whereas if unless whether than once lest
be am is are was were been being have has had having do does did doing
can could may might must shall should will would ought
not n't never
there here then thus hence therefore however also too very just only even still else
""".split())

DELIMITER_CHARS: frozenset[str] = frozenset(".,;:!?\n\r\t-—–()[]{}\"'`/\\|")


def normalize(token: str) -> str:
    """Token text without the byte-level space marker or surrounding whitespace, lower-cased."""
    return token.replace("Ġ", " ").replace("Ċ", "\n").strip().lower()


def is_delimiter(token: str) -> bool:
    """True for tokens made only of delimiter characters and whitespace (e.g. '.', ',', '\\n', ' (')."""
    body = token.replace("Ġ", " ").replace("Ċ", "\n")
    return bool(body) and all(c in DELIMITER_CHARS or c.isspace() for c in body) and any(
        c in DELIMITER_CHARS for c in body)


def starts_word(token: str) -> bool:
    """True when the token begins a new word (leading space, or a newline before it)."""
    return token[:1] in (" ", "Ġ", "\n")


def word_group(token: str, next_token: str | None, *, previous: str | None = None) -> str | None:
    """'function', 'content' or None for a token in context.

    The token must be a whole word: it starts a word (leading space, or the previous token ends a
    line or is absent) and the next token does not continue it (next starts with whitespace or is
    not alphabetic). Its normalised text must be alphabetic (apostrophes allowed for contractions).
    """
    begins = starts_word(token) or previous is None or (previous.endswith("\n"))
    if not begins:
        return None
    if next_token is not None and next_token[:1].isalpha():
        return None
    word = normalize(token)
    if not word or not word.replace("'", "").isalpha():
        return None
    if word in FUNCTION_WORDS:
        return "function"
    return "content" if len(word) >= 2 and word.isalpha() else None
