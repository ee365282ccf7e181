from __future__ import annotations

import hashlib

import pytest

from curation.languages import (
    UNDETERMINED,
    LanguageDetector,
    is_allowed,
    is_rtl,
    standardize_tag,
)
from curation.normalize import hash_example_id, normalize_text, text_hash


def test_normalize_nfc_and_whitespace() -> None:
    decomposed = "Cafe\u0301  au\tlait\n\u00a0bien "
    assert normalize_text(decomposed) == "Caf\u00e9 au lait bien"
    assert normalize_text("  \n\t ") == ""


def test_hash_id_is_stable_and_shared_by_equivalent_texts() -> None:
    a = normalize_text("Cafe\u0301 ouvert")
    b = normalize_text("Caf\u00e9   ouvert ")
    assert a == b
    expected = "h" + hashlib.sha256("Caf\u00e9 ouvert".encode()).hexdigest()[:20]
    assert hash_example_id(a) == expected == hash_example_id(b)
    assert text_hash(a) == hashlib.sha256("Caf\u00e9 ouvert".encode()).hexdigest()
    assert hash_example_id("Café ouvert!") != expected


@pytest.mark.parametrize(
    ("tag", "standard"),
    [
        ("es", "es"),
        ("pt-br", "pt-BR"),
        ("zh-hant", "zh-Hant"),
        ("en_US", "en-US"),
        ("iw", "he"),
        ("xx-QQ123", None),
        ("english", None),
        ("", None),
        ("zz", None),
    ],
)
def test_standardize_tag(tag: str, standard: str | None) -> None:
    assert standardize_tag(tag) == standard


def test_allowed_and_rtl() -> None:
    assert is_allowed("pt-BR", ["pt", "es"])
    assert is_allowed("es", None)
    assert not is_allowed("fr", ["pt", "es"])
    assert is_rtl("ar") and is_rtl("fa-IR") and is_rtl("he")
    assert not is_rtl("hi") and not is_rtl("en")


REAL_TEXTS = {
    "ar": "الخدمة في هذا المطعم كانت ممتازة والطعام لذيذ جدا وسأعود مرة أخرى",
    "hi": "आज मौसम बहुत अच्छा है और हम शाम को पार्क में घूमने जाएंगे",
    "ru": "Вчера мы ходили в кино, фильм оказался скучным и слишком длинным",
    "zh": "这家餐厅的服务非常好，菜也很好吃，我们下次还会再来",
    "el": "Η εξυπηρέτηση ήταν εξαιρετική και το φαγητό πολύ νόστιμο",
    "de": "Die Lieferung kam zwei Tage zu spät und das Paket war beschädigt",
    "fr": "Le concert d'hier soir était incroyable, quelle ambiance magnifique",
    "es": "El tren llegó tarde otra vez y nadie nos dio ninguna explicación",
    "en": "The new update drains my battery in a few hours, very disappointing",
}


def test_detection_on_real_text_in_several_scripts() -> None:
    detector = LanguageDetector(min_confidence=0.5)
    detections = detector.detect(list(REAL_TEXTS.values()))
    assert [d.language for d in detections] == list(REAL_TEXTS)
    assert all(d.confidence >= 0.5 for d in detections)


def test_low_confidence_detection_is_undetermined_not_guessed() -> None:
    detector = LanguageDetector(min_confidence=0.9)
    (detection,) = detector.detect(["ok"])
    assert detection.language == UNDETERMINED
    assert detection.confidence < 0.9
    assert detection.best_guess is not None  # kept for the report, not used as the language


def test_detection_restricted_to_allowed_languages() -> None:
    detector = LanguageDetector(allowed=["es", "pt"], min_confidence=0.0)
    (detection,) = detector.detect(["Obrigado pela ajuda, o atendimento foi muito bom"])
    assert detection.language == "pt"
