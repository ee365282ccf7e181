"""The labeling config and task HTML: valid XML, escaped labels, right-to-left where it belongs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from labeling.interface import (
    CHOICES_TAG,
    TEXT_TAG,
    choice_of,
    choice_result,
    label_config,
    task_html,
    text_direction,
)


def test_config_is_single_choice_over_the_text_in_label_order() -> None:
    root = ET.fromstring(label_config(["negative", "neutral", "positive"]))
    assert root.tag == "View"
    text = root.find("HyperText")
    assert text is not None and text.get("name") == TEXT_TAG and text.get("value") == "$html"
    assert root.find("Header").get("value") == "$language"
    choices = root.find("Choices")
    assert choices.get("name") == CHOICES_TAG and choices.get("toName") == TEXT_TAG
    assert choices.get("choice") == "single"
    assert [c.get("value") for c in choices.findall("Choice")] == [
        "negative",
        "neutral",
        "positive",
    ]


def test_label_names_are_escaped_and_survive_a_parser_exactly() -> None:
    names = ["a & b", "<script>", 'say "hi"', "it's", "two\nlines", "tab\there", "ünïcødé", "حسن"]
    xml = label_config(names)
    assert "<script>" not in xml
    parsed = [c.get("value") for c in ET.fromstring(xml).iter("Choice")]
    assert parsed == names


def test_config_needs_two_labels() -> None:
    with pytest.raises(ValueError):
        label_config(["only"])


@pytest.mark.parametrize(
    ("language", "direction"),
    [
        ("ar", "rtl"),
        ("he", "rtl"),
        ("fa", "rtl"),
        ("ur", "rtl"),
        ("ar-EG", "rtl"),
        ("en", "ltr"),
        ("hi", "ltr"),
        ("zh-Hant", "ltr"),
        ("und", "auto"),
    ],
)
def test_direction_per_language(language: str, direction: str) -> None:
    assert text_direction(language) == direction


def test_task_html_marks_arabic_rtl_and_escapes_the_text() -> None:
    html = task_html("مرحبا <b>&</b>", "ar")
    root = ET.fromstring(html)
    assert root.get("dir") == "rtl" and root.get("lang") == "ar"
    assert root.text == "مرحبا <b>&</b>"  # shown literally, never as markup
    assert ET.fromstring(task_html("hello", "und")).get("lang") is None


def test_choice_round_trip_and_empty_results() -> None:
    assert choice_of(choice_result("neutral")) == "neutral"
    assert choice_of([]) is None
    assert choice_of(None) is None
    other_tag = [{"type": "choices", "from_name": "other", "value": {"choices": ["x"]}}]
    assert choice_of(other_tag) is None


def test_config_shows_the_hint_line_only_in_hint_mode() -> None:
    from curation.config import Config
    from labeling.push import project_label_config

    labels = ["negative", "positive"]
    plain = (
        "<View>\n"
        '  <Header value="$language" size="6"/>\n'
        '  <HyperText name="text" value="$html" inline="true"/>\n'
        '  <Choices name="label" toName="text" choice="single" showInline="true" required="true">\n'
        '    <Choice value="negative"/>\n'
        '    <Choice value="positive"/>\n'
        "  </Choices>\n"
        "</View>\n"
    )
    configs = {
        mode: project_label_config(
            labels, Config.model_validate({"labelstudio": {"pre_annotation": mode}})
        )
        for mode in ("hint", "preselect", "off")
    }
    assert configs["hint"] == plain.replace(
        "</View>", '  <Header value="$model_hint" size="6"/>\n</View>'
    )
    assert configs["preselect"] == configs["off"] == plain
    assert Config().labelstudio.pre_annotation == "hint"  # the default
    assert ET.fromstring(configs["hint"])[-1].attrib == {"value": "$model_hint", "size": "6"}
