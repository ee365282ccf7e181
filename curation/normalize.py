"""Text normalization and stable example ids.

Normalized text = Unicode NFC with every run of whitespace collapsed to one space and the ends
stripped. Two rows are exact duplicates when their normalized texts are equal. The raw text is
stored too, so nothing a user gave us is lost.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")

# Hash ids carry a prefix so they can never be mistaken for (or collide with) the short ids teams
# usually put in their files; 20 hex digits = 80 bits: a collision in a 10M-row pool has odds of
# about 4e-11.
HASH_ID_PREFIX = "h"
HASH_ID_HEX_DIGITS = 20


def normalize_text(raw: str) -> str:
    """NFC, whitespace collapsed, ends stripped."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", raw)).strip()


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
