"""Text direction from the script of a language tag (langcodes' likely-subtags data)."""

from __future__ import annotations

import pytest

from curation.languages import is_rtl, script_of


@pytest.mark.parametrize(
    ("tag", "script"),
    [
        # Right to left by the language's likely script.
        ("ar", "Arab"),
        ("he", "Hebr"),
        ("fa", "Arab"),
        ("ur", "Arab"),
        ("ps", "Arab"),
        ("yi", "Hebr"),
        ("dv", "Thaa"),
        ("ckb", "Arab"),
        ("sd", "Arab"),
        ("ug", "Arab"),
        ("arz", "Arab"),
        ("syr", "Syrc"),
        ("nqo", "Nkoo"),
        ("rhg", "Rohg"),
        ("az-IR", "Arab"),  # Azerbaijani in Iran is written in Arabic script
        # An explicit script subtag wins over the language's usual script.
        ("az-Arab", "Arab"),
        ("pa-Arab", "Arab"),
        ("ff-Adlm", "Adlm"),
    ],
)
def test_right_to_left(tag: str, script: str) -> None:
    assert script_of(tag) == script
    assert is_rtl(tag) is True


@pytest.mark.parametrize(
    ("tag", "script"),
    [
        ("en", "Latn"),
        ("hi", "Deva"),
        ("zh", "Hans"),
        ("az", "Latn"),
        ("pa", "Guru"),
        ("ku-Latn", "Latn"),
        ("ur-Latn", "Latn"),
        ("yi-Latn", "Latn"),
        ("sd-Deva", "Deva"),
        ("ug-Cyrl", "Cyrl"),
        # Unknown, invalid or undetermined: no script, shown left to right.
        ("xx", None),
        ("xx-notalanguage", None),
        ("und", None),
        ("", None),
    ],
)
def test_left_to_right(tag: str, script: str | None) -> None:
    assert script_of(tag) == script
    assert is_rtl(tag) is False
