"""What annotators see: the Label Studio labeling config and the per-task HTML of the text.

One project holds texts of many languages, and a labeling config is per project, so the reading
direction cannot live in the config: Label Studio does not substitute task variables into a
`<View style>` or a `dir` attribute. Each task therefore carries its own `html` field, the escaped
text wrapped in ``<div lang=".." dir="rtl|ltr|auto">``, shown by a `<HyperText inline>` tag; the
plain text stays in `data.text` for exports and the Data Manager. Choices refer to that tag.

With `[labelstudio] pre_annotation = "hint"` (the default) the config has one more line under the
choices, `data.model_hint` ("model's guess: negative"): the proxy's label as plain text, so
nothing is chosen in advance. Pre-selecting it (`"preselect"`) anchors annotators on the model's
answer and makes their agreement look higher than it is.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from curation.languages import UNDETERMINED, is_rtl

# Names of the tags in the generated config; annotations are read back through these.
TEXT_TAG = "text"
CHOICES_TAG = "label"
# The task data field that holds the proxy's guess as text (pre_annotation = "hint").
HINT_FIELD = "model_hint"


def xml_attribute(value: str) -> str:
    """Escape a string for a double-quoted XML attribute.

    Besides & < > and quotes, tabs and line breaks become character references: an XML parser
    normalizes raw whitespace in attribute values to spaces, which would silently change a label.
    """
    escaped = html.escape(value, quote=True)
    return escaped.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")


def label_config(labels: Sequence[str], *, hint: bool = False) -> str:
    """The labeling config of a single-choice text classification project over `labels`;
    `hint`: a line under the choices showing `data.model_hint` (the proxy's guess as text)."""
    if len(labels) < 2:
        raise ValueError("a labeling config needs at least 2 labels")
    choices = "\n".join(f'    <Choice value="{xml_attribute(name)}"/>' for name in labels)
    hint_line = f'  <Header value="${HINT_FIELD}" size="6"/>\n' if hint else ""
    return (
        "<View>\n"
        '  <Header value="$language" size="6"/>\n'
        f'  <HyperText name="{TEXT_TAG}" value="$html" inline="true"/>\n'
        f'  <Choices name="{CHOICES_TAG}" toName="{TEXT_TAG}" choice="single" '
        'showInline="true" required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        f"{hint_line}"
        "</View>\n"
    )


def hint_text(label: str | None) -> str:
    """`data.model_hint` of a task: the proxy's guess, or empty when it has none."""
    return "" if label is None else f"model's guess: {label}"


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
