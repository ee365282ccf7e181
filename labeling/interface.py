"""What annotators see: the Label Studio labeling config and the per-task HTML of the text.

One project holds texts of many languages, and a labeling config is per project, so the reading
direction cannot live in the config: Label Studio does not substitute task variables into a
`<View style>` or a `dir` attribute. Each task therefore carries its own `html` field, the escaped
text wrapped in ``<div lang=".." dir="rtl|ltr|auto">``, shown by a `<HyperText inline>` tag; the
plain text stays in `data.text` for exports and the Data Manager. Choices refer to that tag.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from curation.languages import UNDETERMINED, is_rtl

# Names of the tags in the generated config; annotations are read back through these.
TEXT_TAG = "text"
CHOICES_TAG = "label"


def xml_attribute(value: str) -> str:
    """Escape a string for a double-quoted XML attribute.

    Besides & < > and quotes, tabs and line breaks become character references: an XML parser
    normalizes raw whitespace in attribute values to spaces, which would silently change a label.
    """
    escaped = html.escape(value, quote=True)
    return escaped.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")


def label_config(labels: Sequence[str]) -> str:
    """The labeling config of a single-choice text classification project over `labels`."""
    if len(labels) < 2:
        raise ValueError("a labeling config needs at least 2 labels")
    choices = "\n".join(f'    <Choice value="{xml_attribute(name)}"/>' for name in labels)
    return (
        "<View>\n"
        '  <Header value="$language" size="6"/>\n'
        f'  <HyperText name="{TEXT_TAG}" value="$html" inline="true"/>\n'
        f'  <Choices name="{CHOICES_TAG}" toName="{TEXT_TAG}" choice="single" '
        'showInline="true" required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def text_direction(language: str) -> str:
    """`rtl` for right-to-left scripts, `auto` when the language is unknown, else `ltr`."""
    if language == UNDETERMINED or not language:
        return "auto"
    return "rtl" if is_rtl(language) else "ltr"


def task_html(text: str, language: str) -> str:
    """The text as the annotator sees it: escaped, tagged with its language and direction."""
    lang = "" if language == UNDETERMINED else f' lang="{xml_attribute(language)}"'
    return (
        f'<div{lang} dir="{text_direction(language)}" style="white-space: pre-wrap">'
        f"{html.escape(text, quote=False)}</div>"
    )


def choice_of(result: Sequence[dict] | None) -> str | None:
    """The chosen label in an annotation's `result`, or None when it holds no choice."""
    for region in result or ():
        if region.get("type") != "choices":
            continue
        if region.get("from_name") not in (CHOICES_TAG, None):
            continue
        choices = (region.get("value") or {}).get("choices") or []
        if choices:
            return str(choices[0])
    return None


def choice_result(label: str) -> list[dict]:
    """An annotation or prediction `result` choosing `label`."""
    return [
        {
            "from_name": CHOICES_TAG,
            "to_name": TEXT_TAG,
            "type": "choices",
            "value": {"choices": [label]},
        }
    ]
