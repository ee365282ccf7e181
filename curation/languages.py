"""Language tags (BCP-47) and offline language detection.

A given code is standardized (`pt-br` -> `pt-BR`, `iw` -> `he`) and validated against the IANA
subtag registry through `langcodes`. A row without a code is detected offline with lingua; a
detection whose confidence is below `[languages] min_confidence` gets `und` (undetermined) and is
reported rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import langcodes

UNDETERMINED = "und"

# ISO 15924 codes of the scripts Unicode writes right to left (bidirectional class R or AL):
# Label Studio shows text in these with dir="rtl". The script of a tag comes from the tag itself
# or from CLDR's likely-subtags data (langcodes), so no list of languages is kept here.
RTL_SCRIPTS = frozenset(
    {
        "Adlm", "Arab", "Aran", "Armi", "Avst", "Chrs", "Cprt", "Elym", "Hatr", "Hebr", "Hung",
        "Khar", "Lydi", "Mand", "Mani", "Mend", "Merc", "Mero", "Narb", "Nbat", "Nkoo", "Orkh",
        "Ougr", "Palm", "Phli", "Phlp", "Phnx", "Prti", "Rohg", "Samr", "Sarb", "Sogd", "Sogo",
        "Syrc", "Syre", "Syrj", "Syrn", "Thaa", "Yezi",
    }
)  # fmt: skip


def standardize_tag(tag: str) -> str | None:
    """The standard form of a BCP-47 tag, or None when it is not a valid tag."""
    tag = tag.strip().replace("_", "-")
    if not tag or not langcodes.tag_is_valid(tag):
        return None
    return langcodes.standardize_tag(tag)


def primary_subtag(tag: str) -> str:
    """`pt-BR` -> `pt`; `zh-Hant` -> `zh`."""
    return tag.split("-", 1)[0].lower()


@lru_cache(maxsize=4096)
def script_of(tag: str) -> str | None:
    """The ISO 15924 script of a BCP-47 tag: its own script subtag (`az-Arab` -> Arab), else
    the language's likely script (`ur` -> Arab, `az-IR` -> Arab, `az` -> Latn); None for an
    invalid or undetermined tag."""
    tag = tag.strip().replace("_", "-")
    if not tag or not langcodes.tag_is_valid(tag):
        return None
    language = langcodes.Language.get(tag)
    if language.script:
        return language.script
    if language.language in (None, UNDETERMINED):
        return None
    return language.maximize().script


def is_rtl(tag: str) -> bool:
    """Whether text in this language is written right to left, from its script: `ar`, `ur`
    and `az-Arab` are; `ur-Latn`, `hi` and an unknown tag are not."""
    return script_of(tag) in RTL_SCRIPTS


def is_allowed(tag: str, allowed: Sequence[str] | None) -> bool:
    """A tag is allowed when it, or its primary language subtag, is in the allowed list."""
    if allowed is None:
        return True
    return tag in allowed or primary_subtag(tag) in allowed


@dataclass(frozen=True)
class Detection:
    language: str  # BCP-47 primary subtag, or "und"
    confidence: float
    best_guess: str | None  # what the detector thought, even when below the threshold


@lru_cache(maxsize=8)
def _detector(allowed: tuple[str, ...] | None, low_accuracy: bool):  # noqa: ANN202 - lingua
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_all_languages()
    if allowed:
        codes = []
        for tag in allowed:
            sub = primary_subtag(tag).upper()
            if hasattr(IsoCode639_1, sub):
                codes.append(getattr(IsoCode639_1, sub))
        if len(codes) >= 2:
            builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    return builder.build()


class LanguageDetector:
    """Offline detection with lingua, restricted to the allowed languages when they are known."""

    def __init__(
        self,
        *,
        allowed: Sequence[str] | None = None,
        min_confidence: float = 0.5,
        accuracy: str = "high",
    ) -> None:
        self.allowed = tuple(allowed) if allowed else None
        self.min_confidence = min_confidence
        self.accuracy = accuracy

    def __repr__(self) -> str:
        return (
            f"LanguageDetector(allowed={self.allowed}, min_confidence={self.min_confidence}, "
            f"accuracy={self.accuracy!r})"
        )

    def detect(self, texts: Sequence[str]) -> list[Detection]:
        if not texts:
            return []
        detector = _detector(self.allowed, self.accuracy == "low")
        results = detector.compute_language_confidence_values_in_parallel(list(texts))
        detections = []
        for values in results:
            if not values:
                detections.append(Detection(UNDETERMINED, 0.0, None))
                continue
            top = values[0]
            code = top.language.iso_code_639_1.name.lower()
            if top.value >= self.min_confidence:
                detections.append(Detection(code, float(top.value), code))
            else:
                detections.append(Detection(UNDETERMINED, float(top.value), code))
        return detections
