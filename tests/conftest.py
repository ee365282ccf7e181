"""Shared fixtures: temporary stores, configs, and a tiny random sentence-transformers model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
UMSAB = REPO.parent / "shared" / "data" / "umsab"

# One converted multilingual-e5-small per test session (~470 MB, ~10 s to build), shared by every
# test and every `curate` child process; never the user's ~/.cache. CI may point it elsewhere.
if "CURATE_MODEL_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _model_cache = tempfile.mkdtemp(prefix="curate-test-models-")
    atexit.register(shutil.rmtree, _model_cache, True)
    os.environ["CURATE_MODEL_CACHE"] = _model_cache

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder, so ./curate.toml or ./curation-data never leak in."""
    monkeypatch.chdir(tmp_path)
    # A developer's own environment must not change results: each of these picks a store,
    # a config or a wait.
    for name in ("CURATE_CONFIG", "CURATE_STORE", "CURATE_BUSY_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-d random BERT saved as a sentence-transformers model (fast unit tests).

    Its tokenizer is the real MiniLM WordPiece vocabulary, so it tokenizes real text.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from curation.embeddings import packaged_model_path

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-st")
    backbone = folder / "backbone"
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    transformer = Transformer(str(backbone), max_seq_length=64)
    pooling = Pooling(32, pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    out = folder / "st"
    model.save(str(out))
    return out


def write_config(folder: Path, text: str) -> Path:
    path = folder / "curate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """`curate ARGS` in process: (exit code, stdout, stderr)."""
    from curation.cli import main

    with pytest.raises(SystemExit) as caught:
        main(list(args))
    out, err = capsys.readouterr()
    return caught.value.code, out, err


def run_cli_json(capsys: pytest.CaptureFixture, *args: str) -> dict:
    """`curate ARGS --json`: must exit 0 and print exactly one JSON object."""
    import json

    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A real Ray cluster on this machine: a head node and one worker node, 1 CPU each, started
    with `ray start` from this environment and stopped at the end of the session. Yields the
    address for `[engine] address`.

    Stopped by killing the processes whose command line names this cluster's temp folder, not
    with `ray stop`, which stops every Ray process of the user (another cluster included).
    Ray advertises the machine's own address for 127.0.0.1 (ray._private.services.
    resolve_ip_for_localhost): nodes of one machine reach each other on it."""
    import socket
    import subprocess
    import sys
    import tempfile

    ray = Path(sys.executable).with_name("ray")
    # short: Ray's unix sockets live under it (a socket path has at most 107 bytes)
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    node = [
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--object-store-memory=200000000",
        "--disable-usage-stats",
    ]

    def start(*args: str) -> None:
        done = subprocess.run(
            [str(ray), "start", *args, *node], env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stdout + done.stderr

    try:
        start("--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}")
        start(f"--address={address}")
        check = (
            "import ray, time\n"
            f"ray.init(address={address!r}, log_to_driver=False)\n"
            "for _ in range(120):\n"
            "    if sum(n['Alive'] for n in ray.nodes()) == 2: break\n"
            "    time.sleep(0.5)\n"
            "print(sum(n['Alive'] for n in ray.nodes()))\n"
        )
        alive = subprocess.run(
            [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=120
        )
        assert alive.stdout.strip().splitlines()[-1:] == ["2"], alive.stdout + alive.stderr
        yield address
    finally:
        _kill_processes_naming(str(temp))
        import shutil

        shutil.rmtree(temp, ignore_errors=True)


def _kill_processes_naming(marker: str) -> None:
    import contextlib
    import signal
    import time

    def holders() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in holders():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        for _ in range(50):
            if not holders():
                return
            time.sleep(0.2)
