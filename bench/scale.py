"""How the costs that depend on the number of users grow: ``python -m bench.scale [--quick] [--json]``.

For 10k, 100k and 1M synthetic users (``--quick`` stops at 100k), each figure next to its 10k value:

- **artifact bytes**, ID-based NeuMF (format 1: a row per user) against the sequence model (format 2:
  no per-user weights), both at the deployed shapes over 3,700 movies (MovieLens-1M's catalogue);
- **the recommend function's cold load** of that artifact, in a fresh interpreter as a new container
  pays it: seconds and peak RSS, against the same interpreter importing the loader and loading nothing.

Independent of the user count, measured once: **publication** users/s of one writer (one shard of a
Distributed Map) against a raw pipelined ``SET`` of the same bytes (``bench.serve``'s subject), and
**DDP** samples/s of the sequence model with 1 and 2 gloo processes (``torchrun``).

Not measured here yet: the export (it reads MongoDB whole; the data-lake export does not exist) and
training samples/s as a function of users. ``--plot FILE`` writes the curves as a PNG.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchServers, Profiler, parser, progress, ratio, run_and_print
from bench.serve_population import QUICK
from bench.serve_subjects import publication_throughput
from movierec import artifact
from movierec.artifact import ArtifactMetadata, FeatureNormalisation, Weights
from movierec.publication import MovieInfo

MOVIES = 3_700
FACTORS, MLP = 64, (64, 32, 16)
USER_FEATURES, MOVIE_FEATURES = 12, 30
COUNTS = (10_000, 100_000, 1_000_000)
QUICK_COUNTS = (10_000, 100_000)
# Peak RSS from VmHWM: it starts afresh at exec, where ru_maxrss keeps the forking parent's peak.
LOAD_SCRIPT = """
import sys, time
started = time.perf_counter()
from movierec import artifact, sequence
body = open(sys.argv[1], "rb").read() if sys.argv[1] != "-" else None
if body is not None:
    (sequence.load if sys.argv[2] == "sequence" else artifact.load)(body)
seconds = time.perf_counter() - started
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(seconds, int(status) / 1024)
"""


def id_artifact(n_users: int) -> bytes:
    """A format-1 artifact at the deployed shapes, random weights (size and load time do not depend on
    their values)."""
    rng = np.random.default_rng(0)
    h0 = MLP[0]

    def w(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    weights = {
        Weights.USER_GMF: w(n_users, FACTORS), Weights.USER_MLP: w(n_users, h0),
        Weights.ITEM_GMF: w(MOVIES, FACTORS), Weights.ITEM_MLP: w(MOVIES, h0),
        Weights.OUT_GMF: w(FACTORS), Weights.OUT_MLP: w(MLP[-1]), Weights.OUT_BIAS: w(1),
        Weights.RETRIEVAL_BIAS: w(MOVIES), Weights.FOLD_IN: w(FACTORS + h0 + 1, FACTORS + h0),
        Weights.ITEM_GMF_PROJ: w(FACTORS, MOVIE_FEATURES), Weights.ITEM_MLP_PROJ: w(h0, MOVIE_FEATURES),
        Weights.ITEM_MLP_BIAS: w(h0), Weights.ITEM_FEATURES: w(MOVIES, MOVIE_FEATURES),
    }  # fmt: skip
    for k in range(len(MLP) - 1):
        weights[Weights.hidden_w(k)] = w(MLP[k + 1], MLP[k])
        weights[Weights.hidden_b(k)] = w(MLP[k + 1])

    def norm(n: int) -> FeatureNormalisation:
        return FeatureNormalisation([f"f{i}" for i in range(n)], [0.0] * n, [1.0] * n)

    metadata = ArtifactMetadata(
        model_version="bench", created_at="2026-12-04T00:00:00Z", data_cutoff=0, code_version="bench",
        user_ids=[f"user-{u}" for u in range(n_users)], movie_ids=list(range(1, MOVIES + 1)),
        user_features=norm(USER_FEATURES), movie_features=norm(MOVIE_FEATURES),
        cold_movie_features=[0.0] * MOVIE_FEATURES, factors=FACTORS, mlp_layers=list(MLP),
    )  # fmt: skip
    return artifact.save(artifact.ModelArtifact(weights, metadata))


def sequence_artifact(n_users: int) -> bytes:
    from bench.sequence import untrained_artifact
    from training_job.sequence_model import SequenceParams

    return untrained_artifact(MOVIES, n_users, SequenceParams())


def cold_load(path: Path | None, kind: str) -> tuple[float, float]:
    """(seconds, peak RSS MB) of a fresh interpreter importing the loader and loading ``path``."""
    runs = []
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", LOAD_SCRIPT, str(path) if path else "-", kind],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds, rss = done.stdout.split()
        runs.append((float(seconds), float(rss)))
    return float(np.median([r[0] for r in runs])), float(np.median([r[1] for r in runs]))


def by_users(counts: tuple[int, ...], work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in counts:
        progress(f"{n:,} users: artifacts and cold loads")
        row: dict[str, Any] = {}
        for kind, build in (("id", id_artifact), ("sequence", sequence_artifact)):
            body = build(n)
            path = work / f"{kind}-{n}.npz"
            path.write_bytes(body)
            seconds, rss = cold_load(path, kind)
            row[kind] = {
                "artifact_bytes": len(body),
                "cold_load_s": round(seconds, 3),
                "rss_mb": round(rss, 1),
            }
            path.unlink()
        out[str(n)] = row
    first = out[str(counts[0])]
    for row in out.values():
        for kind, figures in row.items():
            figures["vs_first"] = {
                name: ratio(value, first[kind][name], 3) for name, value in list(figures.items())
            }
    return out


def ddp_speedup(work: Path) -> dict[str, Any]:
    progress("DDP: the sequence model with 1 and 2 gloo processes")
    rates = {}
    for processes in (1, 2):
        out = work / f"ddp-{processes}.json"
        subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
             "-m", "training_job", "sequence-train", "--synthetic-users", "2000",
             "--synthetic-movies", "1000", "--synthetic-events", "80000", "--epochs", "2", "--threads", "1",
             "--out", str(out)],
            capture_output=True, text=True, check=True, timeout=900,
        )  # fmt: skip
        result = json.loads(out.read_text())
        rates[processes] = {
            "samples_per_second": round(result["samples_per_second"]),
            "validation_ndcg@10": round(result["final_validation_ndcg@10"], 4),
        }
    return {
        "by_processes": rates,
        "speedup": ratio(rates[2]["samples_per_second"], rates[1]["samples_per_second"], 2),
    }


def publication(quick: bool) -> dict[str, Any]:
    progress("publication: one writer (one shard) against a raw pipelined SET")
    rng = random.Random(5)
    genres = ("Drama", "Comedy", "Action", "Thriller", "Romance")
    catalogue = {
        m: MovieInfo(f"Movie {m}", (rng.choice(genres),), 1950 + m % 70) for m in range(1, MOVIES + 1)
    }
    with BenchServers(redis=True) as servers:
        from movierec.config import RedisSettings
        from movierec.stores.cache import connect_redis

        client = connect_redis(RedisSettings(redis_url=servers.redis_url))
        return publication_throughput(client, QUICK, catalogue)


def run(quick: bool, profiler: Profiler) -> dict[str, Any]:
    del profiler
    counts = QUICK_COUNTS if quick else COUNTS
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as temp:
        work = Path(temp)
        progress("the loader alone (the cold-load baseline)")
        bare_s, bare_rss = cold_load(None, "id")
        users = by_users(counts, work)
        ddp = ddp_speedup(work)
    shard = publication(quick)
    largest, smallest = users[str(counts[-1])], users[str(counts[0])]
    return {
        "movies": MOVIES,
        "by_users": users,
        "loader_alone": {"cold_load_s": round(bare_s, 3), "rss_mb": round(bare_rss, 1)},
        "artifact_bytes_growth": {
            kind: ratio(largest[kind]["artifact_bytes"], smallest[kind]["artifact_bytes"], 3)
            for kind in ("id", "sequence")
        },
        "publish_ratio": shard["publish_ratio"],
        "publication": shard,
        "ddp_speedup": ddp["speedup"],
        "ddp": ddp,
        "not_measured": [
            "export seconds and peak RSS (no data-lake export yet)",
            "training samples/s by users",
        ],
    }


def report(result: dict[str, Any]) -> str:
    lines = ["users       id bytes      id load s  id RSS MB   seq bytes   seq load s  seq RSS MB"]
    for n, row in result["by_users"].items():
        i, s = row["id"], row["sequence"]
        lines.append(
            f"{int(n):>9,}  {i['artifact_bytes']:>12,}  {i['cold_load_s']:>9}  {i['rss_mb']:>9}"
            f"  {s['artifact_bytes']:>10,}  {s['cold_load_s']:>10}  {s['rss_mb']:>10}"
        )
    lines.append(f"loader alone: {result['loader_alone']}")
    lines.append(f"artifact bytes growth: {result['artifact_bytes_growth']}")
    lines.append(
        f"publication ratio to raw SET: {result['publish_ratio']}; DDP speedup: {result['ddp_speedup']}"
    )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = [int(n) for n in result["by_users"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for kind, label in (("id", "ID-based NeuMF (format 1)"), ("sequence", "sequence model (format 2)")):
        rows = [result["by_users"][str(n)][kind] for n in users]
        left.plot(users, [r["artifact_bytes"] / 1e6 for r in rows], marker="o", label=label)
        right.plot(users, [r["rss_mb"] for r in rows], marker="o", label=label)
    right.axhline(result["loader_alone"]["rss_mb"], color="grey", linestyle=":", label="loader alone")
    for axis, title in ((left, "artifact MB"), (right, "cold-load peak RSS MB")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("users")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    arguments_parser = parser("python -m bench.scale", __doc__ or "")
    arguments_parser.add_argument("--plot", type=Path, default=None, help="write the curves as a PNG")
    arguments = arguments_parser.parse_args(argv)

    def with_plot(quick: bool, profiler: Profiler) -> dict[str, Any]:
        result = run(quick, profiler)
        if arguments.plot:
            plot(result, arguments.plot)
        return result

    return run_and_print(arguments, with_plot, report)


if __name__ == "__main__":
    sys.exit(main())
