"""Serving latency per tier through the Lambda handler, start-api throughput, publication throughput.

``python -m bench.serve [--quick] [--json] [--profile FILE]``

1. **Tiers, in process.** ``functions/recommend/app.py`` is imported the way Lambda does it (its
   module-level code builds the recommender from the environment: REDIS_URL, ARTIFACT_BUCKET,
   POPULARITY_SNAPSHOT_PATH ...) and ``app.lambda_handler`` is called with an API Gateway HTTP API
   (payload 2.0) event shaped like ``events/http-recommendations.json`` and a LambdaContext. Each tier
   has its own users, prepared so that the chain stops exactly there (checked before and after):

   - ``personalized``: a published 100-item list, real-time seen movies older than the publication;
   - ``online``: a user the published NeuMF artifact does not know, with 20 recent watches: fold-in,
     retrieval, re-ranking and the cache write-back; each user is timed once, with the cached lists
     deleted (untimed) beforehand, so every timed request scores;
   - ``regional_popular``: a cold start with a sign-up region (no list, no activity);
   - ``global_popular``: a cold start with no region;
   - ``snapshot``: any user, with Redis stopped (measured last); then, as an extra, with a Redis that
     accepts connections but never answers (a hung node), which costs the client's socket timeouts.

   The baseline, interleaved with the tiers in the same run, is a raw redis-py ``GET`` of a published
   100-item list key. ``cached_p99_ratio = personalized p99 / raw GET p99`` (target <= 4); every tier's
   p99 must stay under 100 ms. A bare Powertools resolver (one route, no I/O) is timed alongside as a
   floor for the framework's own cost.
2. **start-api.** ``python -m infra.local start-api`` runs as a child process against the same Redis;
   a threaded keep-alive load generator sends signed-in ``GET /v1/recommendations`` for a bounded time
   at concurrency 1 and 8. Requests/second and client-side latency.
3. **Publication.** ``PublicationWriter.put_recommendations`` (users/second) against a raw pipelined
   ``SET`` of the same bytes under the same keys, chunked as the writer chunks, alternating rounds.
4. **Features.** ``bench/serve_features.py``: one user's and 200 movies' online features read with
   Feast's SDK, with the layer's thin reader and as a raw ``HMGET``; the online ranking with fresh
   movie features, uncached and cached; the SDK's import time and size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import serve_features
from bench.common import BenchServers, Profiler, Summary, format_table, parser, progress, ratio, run_and_print
from bench.serve_http import serve_start_api, start_api_throughput
from bench.serve_population import FULL, QUICK, forget_online_lists
from bench.serve_rig import Rig, build_rig, time_live_tiers, time_outages
from bench.serve_subjects import TIERS, check_sources, count_round_trips, publication_throughput

CACHED_P99_TARGET = 4.0
TIER_P99_TARGET_MS = 100.0


def tier_result(summary: Summary, raw: Summary) -> dict[str, Any]:
    return {
        "p50_ms": round(summary.p50_ms, 4),
        "p99_ms": round(summary.p99_ms, 4),
        "mean_ms": round(summary.mean_ms, 4),
        "p50_ratio": ratio(summary.p50_ms, raw.p50_ms, 2),
        "p99_ratio": ratio(summary.p99_ms, raw.p99_ms, 2),
        "n": summary.n,
    }


# ---- the run ----------------------------------------------------------------------------------------------


def run(quick: bool, profiler: Profiler) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    with (
        BenchServers(redis=True, aws=True, own_redis=True) as servers,
        tempfile.TemporaryDirectory(prefix="movierec-bench-serve-") as temp,
    ):
        progress(f"servers ready (started: {', '.join(servers.started)})")
        rig = build_rig(servers, plan, Path(temp))
        sources = check_sources(rig.callers, rig.live_tiers)
        online_users = rig.population.users["online"]
        forget_online_lists(rig.setup_client, rig.population.version, online_users)
        summaries = time_live_tiers(rig)
        sources_after = check_sources(rig.callers, rig.live_tiers)  # the same tiers after the run
        forget_online_lists(rig.setup_client, rig.population.version, online_users)
        round_trips = count_round_trips(rig.callers, rig.live_tiers)
        if profiler.path:
            progress(f"profiling {plan.profile_calls} personalized requests")
            with profiler.active():
                for _ in range(plan.profile_calls):
                    rig.callers["personalized"]()
        progress("publication throughput")
        publication = publication_throughput(rig.setup_client, plan, rig.population.catalogue)
        progress("start-api under load")
        users = rig.population.users["personalized"]
        log = rig.work_dir / "start-api.log"
        api = start_api_throughput(servers, users, plan.load_seconds, log)
        progress("feature reads")
        features = serve_features.measure(servers.redis_url, Path(temp) / "features", quick)
        snapshot, unresponsive, outage_sources = time_outages(rig)
        sources |= outage_sources
        sources |= {f"{tier} (after timing)": served for tier, served in sources_after.items()}
    result = assemble(rig, summaries, snapshot, unresponsive, sources, round_trips, publication, api)
    return result | {"features": features}


def assemble(
    rig: Rig,
    summaries: dict[str, Summary],
    snapshot: Summary,
    unresponsive: Summary,
    sources: dict[str, dict[str, int]],
    round_trips: dict[str, float],
    publication: dict[str, Any],
    api: dict[str, Any],
) -> dict[str, Any]:
    raw = summaries["raw_get"]
    tiers: dict[str, Any] = dict.fromkeys(TIERS)
    tiers |= {tier: tier_result(summaries[tier], raw) for tier in rig.live_tiers}
    tiers["snapshot"] = tier_result(snapshot, raw)
    measured = [t for t in tiers.values() if t is not None]
    cached_ratio = ratio(summaries["personalized"].p99_ms, raw.p99_ms, 2)
    return {
        "raw_get": {
            "p50_ms": round(raw.p50_ms, 4),
            "p99_ms": round(raw.p99_ms, 4),
            "mean_ms": round(raw.mean_ms, 4),
            "n": raw.n,
        },
        "tiers": tiers,
        "cached_p99_ratio": cached_ratio,
        "publish_users_per_s": publication["publish_users_per_s"],
        "publish_ratio": publication["publish_ratio"],
        "cached_p50_ratio": ratio(summaries["personalized"].p50_ms, raw.p50_ms, 2),
        # A quiet machine's raw GET has p99/p50 of about 2; far above that, every p99 here (and so
        # cached_p99_ratio) measures the scheduler more than the code: read the p50 ratios instead.
        "raw_get_p99_over_p50": ratio(raw.p99_ms, raw.p50_ms, 1),
        "bare_powertools": tier_result(summaries["bare_powertools"], raw),
        "snapshot_redis_unresponsive": tier_result(unresponsive, raw),
        "online_note": None
        if rig.has_online
        else f"no online scorer is wired: users without a list were answered by {rig.online_served}",
        "served_by": sources,
        "redis_round_trips_per_request": round_trips,
        "publication": publication,
        "start_api": api,
        "targets": {
            "cached_p99_ratio_max": CACHED_P99_TARGET,
            "tier_p99_ms_max": TIER_P99_TARGET_MS,
            "cached_p99_ratio_met": cached_ratio is not None and cached_ratio <= CACHED_P99_TARGET,
            "tier_p99_met": all(t["p99_ms"] <= TIER_P99_TARGET_MS for t in measured),
            "unresponsive_redis_p99_met": unresponsive.p99_ms <= TIER_P99_TARGET_MS,
        },
        "mode": rig.plan.name,
    }


def report(result: dict[str, Any]) -> str:
    raw = result["raw_get"]
    rows: list[list[object]] = [["raw GET (baseline)", raw["p50_ms"], raw["p99_ms"], 1.0]]
    rows.append(["bare Powertools", *_cells(result["bare_powertools"])])
    for tier, detail in result["tiers"].items():
        rows.append([tier, *(_cells(detail) if detail else [None, None, None])])
    table = format_table(rows, ["path", "p50 ms", "p99 ms", "p99 / raw GET"])
    api = result["start_api"]
    lines = [
        table,
        "",
        f"cached p99 ratio: {result['cached_p99_ratio']} (target <= {CACHED_P99_TARGET})",
        f"publication: {result['publish_users_per_s']:,.0f} users/s, ratio {result['publish_ratio']}",
        f"start-api: {api['c1']['requests_per_s']} req/s at c=1, {api['c8']['requests_per_s']} req/s at c=8"
        if "c1" in api
        else f"start-api: {api.get('error')}",
        f"unresponsive Redis: p99 {result['snapshot_redis_unresponsive']['p99_ms']} ms",
        "",
        serve_features.report(result["features"]) if "features" in result else "",
    ]
    return "\n".join(lines) + "\n"


def _cells(detail: dict[str, Any]) -> list[object]:
    return [detail["p50_ms"], detail["p99_ms"], detail["p99_ratio"]]


def main(argv: Sequence[str] | None = None) -> int:
    arguments_parser = parser("python -m bench.serve", __doc__ or "")
    arguments_parser.add_argument("--start-api", type=int, metavar="PORT", help=argparse.SUPPRESS)
    arguments = arguments_parser.parse_args(argv)
    if arguments.start_api:
        return serve_start_api(arguments.start_api)
    return run_and_print(arguments, run, report)


if __name__ == "__main__":
    sys.exit(main())
