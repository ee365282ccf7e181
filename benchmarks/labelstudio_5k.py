"""Push and pull 5,000 tasks against a real Label Studio, with annotations posted through the API.

Steps, each timed:
  server      start Label Studio with scripts/labelstudio.sh on a copy of the migrated test
              template (tests/labeling/conftest.py makes it) or, without one, on a fresh data dir
  push        `labeling.push.push` of a 5,000-item round into a new project (chunks of 1,000)
  push again  the same push again: reconciliation only, nothing imported
  annotate    one annotation per task via `annotations.create(..., completed_by=user)` by three
              real users, from a few client threads (the server's cost, not ours)
  pull        `labeling.pull.pull`: list + export pages, mirror, resolve, agreement
  pull again  the same pull with nothing changed

    python benchmarks/labelstudio_5k.py                 # own server, 5000 tasks
    python benchmarks/labelstudio_5k.py --tasks 500     # a quick look
    python benchmarks/labelstudio_5k.py --url http://127.0.0.1:8080 --token-file PATH

Writes benchmarks/results/labelstudio_5k.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from curation.config import config_from_dict  # noqa: E402
from curation.ingest import ingest_files  # noqa: E402
from curation.pool import RoundItem, record_round  # noqa: E402
from curation.store import Store  # noqa: E402
from labeling.client import LabelStudioClient  # noqa: E402
from labeling.interface import choice_result  # noqa: E402
from labeling.pull import pull  # noqa: E402
from labeling.push import push  # noqa: E402

SCRIPT = REPO / "scripts" / "labelstudio.sh"
RESULTS = REPO / "benchmarks" / "results"
LABELS = ["negative", "neutral", "positive"]
LANGUAGES = ["en", "de", "es", "ar", "hi"]
WORDS = {
    "en": "the delivery was late but the support team answered quickly",
    "de": "die Lieferung kam spät aber der Support hat schnell geantwortet",
    "es": "el envío llegó tarde pero el soporte respondió rápido",
    "ar": "وصل الطلب متأخرا لكن فريق الدعم رد بسرعة",
    "hi": "डिलीवरी देर से आई लेकिन सहायता टीम ने जल्दी जवाब दिया",
}
TOKEN = "curate-bench-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def script(command: str, env: dict) -> None:
    subprocess.run(["bash", str(SCRIPT), command], env=env, check=True, capture_output=True)


def start_server(workdir: Path) -> tuple[str, str, dict, dict]:
    venv = Path(os.environ.get("CURATE_LS_VENV") or REPO / ".venv-labelstudio")
    env = {
        **os.environ,
        "CURATE_LS_VENV": str(venv),
        "CURATE_LS_TOKEN": TOKEN,
        "CURATE_LS_USERNAME": "admin@curate.bench",
        "CURATE_LS_PASSWORD": "bench-password",
    }
    script("install", env)
    data_dir = workdir / "labelstudio"
    template = venv / "test-template"
    from_template = (template / ".ready").exists()
    if from_template:
        shutil.copytree(
            template, data_dir, ignore=shutil.ignore_patterns("curate-server.*", ".ready")
        )
    port = free_port()
    env.update({"CURATE_LS_DATA_DIR": str(data_dir), "CURATE_LS_PORT": str(port)})
    start = time.perf_counter()
    script("start", env)
    seconds = time.perf_counter() - start
    token = (data_dir / "curate-token").read_text().strip()
    return (
        f"http://127.0.0.1:{port}",
        token,
        env,
        {
            "server_start_s": round(seconds, 1),
            "server_from_template": from_template,
        },
    )


def build_store(folder: Path, tasks: int) -> tuple:
    config = config_from_dict(
        {
            "store": {"path": str(folder / "store")},
            "languages": {"detect": False},
            "labels": {"names": LABELS},
            "labelstudio": {"project_title": f"bench {datetime.now(UTC):%H%M%S}"},
        }
    )
    pool = folder / "pool.jsonl"
    with open(pool, "w", encoding="utf-8") as handle:
        for i in range(tasks):
            language = LANGUAGES[i % len(LANGUAGES)]
            row = {"id": f"b{i:05d}", "text": f"{WORDS[language]} #{i}", "language": language}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    store = Store(config.store.path)
    ingest_files(store, config, [pool], progress=False)
    items = [
        RoundItem(f"b{i:05d}", i + 1, 1.0 - i / tasks, "bench", LABELS[i % 3], 0.5)
        for i in range(tasks)
    ]
    record_round(
        store,
        strategy="bench",
        allocation="equal",
        budget=tasks,
        decision={},
        proxy_model_version="bench-proxy",
        items=items,
    )
    return store, config


def timed(label: str, results: dict, fn, *args, **kwargs):  # noqa: ANN001, ANN201, ANN003
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    results[label] = round(time.perf_counter() - start, 1)
    print(f"  {label}: {results[label]} s", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=1000, help="tasks per import request")
    parser.add_argument("--threads", type=int, default=2, help="client threads that annotate")
    parser.add_argument("--annotate", type=int, help="annotate only this many tasks (default: all)")
    parser.add_argument("--url", help="an existing server (default: start one)")
    parser.add_argument("--token-file", type=Path, help="its API token (with --url)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="curate-ls-bench-"))
    results: dict = {"tasks": args.tasks, "chunk": args.chunk}
    env = None
    try:
        if args.url:
            url, token = args.url, args.token_file.read_text().strip()
        else:
            url, token, env, started = start_server(workdir)
            results.update(started)
        store, config = build_store(workdir, args.tasks)
        config = config.model_copy(
            update={
                "labelstudio": config.labelstudio.model_copy(
                    update={"import_chunk_size": args.chunk}
                )
            }
        )
        client = LabelStudioClient(url, token, timeout=600, max_retries=5)
        pushed = timed("push_s", results, push, store, config, client)
        assert pushed["pushed"] == args.tasks, pushed
        again = timed("push_again_s", results, push, store, config, client)
        assert again["pushed"] == 0 and again["already_pushed"] == args.tasks, again

        users = []
        for n in range(3):
            email = f"bench{n}-{int(time.time())}@curate.bench"
            user = client.sdk.users.create(username=email.split("@")[0], email=email)
            users.append(int(user.id))
        ordered = store.conn.execute("SELECT task_id FROM tasks ORDER BY task_id")
        tasks = [row[0] for row in ordered][: args.annotate]
        results["annotations"] = len(tasks)

        def annotate(index_task: tuple[int, int]) -> None:
            index, task_id = index_task
            client.call(
                "create annotation",
                client.sdk.annotations.create,
                task_id,
                result=choice_result(LABELS[(index * 7) % 3]),
                completed_by=users[index % 3],
                lead_time=2.0,
            )

        def annotate_all() -> None:
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(annotate, enumerate(tasks)))

        timed("annotate_s", results, annotate_all)
        pulled = timed("pull_s", results, pull, store, config, client)
        assert pulled["annotations"] == pulled["new"] == len(tasks), pulled
        assert pulled["labels_resolved"] == len(tasks), pulled
        again = timed("pull_again_s", results, pull, store, config, client)
        assert again["new"] == again["updated"] == again["labels_resolved"] == 0, again
        store.close()
    finally:
        if env is not None:
            script("stop", env)
        shutil.rmtree(workdir, ignore_errors=True)

    results.update(
        {
            "push_tasks_per_s": round(args.tasks / results["push_s"], 1),
            "pull_tasks_per_s": round(args.tasks / results["pull_s"], 1),
            "annotations_per_s": round(len(tasks) / results["annotate_s"], 1),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}",
            "label_studio": "1.23.2 (SQLite, Django dev server)",
        }
    )
    RESULTS.mkdir(exist_ok=True)
    name = "labelstudio_5k.json" if args.tasks == 5000 else f"labelstudio_{args.tasks}.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nLabel Studio bridge, {args.tasks} tasks ({results['machine']})")
    print(f"{'step':<34}{'seconds':>10}")
    rows = [
        ("server start", results.get("server_start_s")),
        ("push (import + bookkeeping)", results["push_s"]),
        ("push again (reconcile only)", results["push_again_s"]),
        (f"annotate {len(tasks)} via API", results["annotate_s"]),
        ("pull (list + export + resolve)", results["pull_s"]),
        ("pull again (nothing new)", results["pull_again_s"]),
    ]
    for name, seconds in rows:
        print(f"{name:<34}{'-' if seconds is None else seconds:>10}")


if __name__ == "__main__":
    main()
