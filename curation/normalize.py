"""Text normalization and stable example ids.

Normalized text = Unicode NFC with every run of whitespace collapsed to one space and the ends
stripped. Two rows are exact duplicates when their normalized texts are equal. The raw text is
stored too, so nothing a user gave us is lost.

Invisible characters (zero-width space and joiners, word joiner, BOM, controls such as NUL, ...)
are not removed by normalization: a joiner inside a word carries meaning (Devanagari, Persian,
emoji sequences) and removing them would change the ids of texts already stored. Ingest uses
`invisible_only` to tell a text made only of them from a real one.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")

# Code points that render as nothing but are not in the categories below: the combining grapheme
# joiner, Hangul fillers, Khmer inherent vowels, the braille blank (a favourite "invisible" text).
_BLANK_LOOKING = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")
# Controls (Cc: NUL, ...), format characters (Cf: zero-width space/joiners, word joiner, BOM,
# bidi marks, soft hyphen, tags) and separators (spaces, line and paragraph separators).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})

# Hash ids carry a prefix so they can never be mistaken for (or collide with) the short ids teams
# usually put in their files; 20 hex digits = 80 bits: a collision in a 10M-row pool has odds of
# about 4e-11.
HASH_ID_PREFIX = "h"
HASH_ID_HEX_DIGITS = 20


def normalize_text(raw: str) -> str:
    """NFC, whitespace collapsed, ends stripped."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", raw)).strip()


def is_invisible(char: str) -> bool:
    """Whether one character renders as nothing (see `invisible_only`)."""
    code = ord(char)
    return (
        unicodedata.category(char) in _INVISIBLE_CATEGORIES
        or char in _BLANK_LOOKING
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0xE0100 <= code <= 0xE01EF  # variation selectors supplement
    )


def invisible_only(text: str) -> bool:
    """Whether a text has no visible character at all (empty counts as invisible-only)."""
    # all() stops at the first visible character: a real text costs one or two lookups.
    return all(is_invisible(char) for char in text)


def text_hash(normalized: str) -> str:
    """SHA-256 hex digest of the normalized text (the duplicate key)."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def hash_example_id(normalized: str) -> str:
    """The id of a row that came without one: derived from its normalized text, so stable."""
    return HASH_ID_PREFIX + text_hash(normalized)[:HASH_ID_HEX_DIGITS]


def file_sha256(path: str, *, block_size: int = 1 << 20) -> str:
    """Content hash of a file, read in blocks (files already ingested are skipped by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()
