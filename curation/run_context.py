"""What one `curate run` carries from stage to stage.

Apart from curation.nightly (which runs the stages) and curation.nightly_steps (the stages of
the other wings), so that both import it and neither imports the other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from curation.config import Config
from curation.redact import redact_url
from curation.store import Store

if TYPE_CHECKING:
    from curation.pool import PoolArrays

log = logging.getLogger("curate.run")


@dataclass
class StageResult:
    status: str = "ok"
    counts: dict = field(default_factory=dict)
    message: str | None = None


@dataclass
class RunContext:
    store: Store
    config: Config
    run_id: str
    run_dir: Path
    dry_run: bool
    progress: bool
    warnings: list[str] = field(default_factory=list)
    results: dict[str, StageResult] = field(default_factory=dict)
    # The pool arrays, loaded once by evaluate and reused by select (nothing writes between).
    pool: PoolArrays | None = None
    # The inbox files this run's ingest added (their examples are tonight's batch, for drift).
    batch_files: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        # Warnings reach stdout, the report and the store: no credentials of a URL in them.
        message = redact_url(message)
        self.warnings.append(message)
        log.warning(message)
