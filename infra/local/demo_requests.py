"""The demo's sample requests against the local API, each printed as a ``curl`` line with its answer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from infra.local.apigw import local_jwt


@dataclass(frozen=True)
class Sample:
    title: str
    path: str
    user: str | None = None


def show_requests(
    base_url: str, known: str, newcomer: str | None, genre: str, region: str | None
) -> int | None:
    """Prints each request and its answer; returns the known user's top pick."""
    top = show(
        base_url,
        Sample(f"personalised recommendations for a known user ({known})", "/v1/recommendations?k=5", known),
    )
    top_pick = int(top["items"][0]["movie_id"]) if top.get("items") else None
    samples = [
        Sample("the same user, one genre only", f"/v1/recommendations?k=3&genre={genre}", known),
    ]
    if newcomer:
        samples.append(
            Sample(f"a brand-new user in region {region!r} (cold start)", "/v1/recommendations?k=5", newcomer)
        )
    samples += [
        Sample(
            f"popular in region {region!r}, for an anonymous visitor",
            f"/v1/popular?k=5&region={region or ''}",
        ),
        Sample("popular everywhere, for an anonymous visitor", "/v1/popular?k=5"),
        Sample(
            "movies similar to the known user's top pick", f"/v1/movies/{top_pick or 1}/similar?k=3", known
        ),
        Sample("no identity", "/v1/recommendations"),
        Sample("an out-of-range parameter", "/v1/recommendations?k=500", known),
        Sample("health", "/health"),
    ]
    for sample in samples:
        show(base_url, sample)
    return top_pick


def show(base_url: str, sample: Sample) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {local_jwt({'sub': sample.user})}"} if sample.user else {}
    status, body = get(base_url + sample.path, headers)
    curl = f"curl -s '{base_url}{sample.path}'" + "".join(f" -H '{k}: {v}'" for k, v in headers.items())
    print(f"\n# {sample.title}\n$ {curl}\n{status} {summarise(body)}", flush=True)
    return body


def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def summarise(body: dict[str, Any]) -> str:
    if "items" not in body:
        return json.dumps(body)
    head = {k: v for k, v in body.items() if k != "items"}
    lines = [json.dumps(head)]
    for item in body["items"]:
        lines.append(
            f"    {item['movie_id']:>6}  {item['score']:.3f}  {item['title']}  ({', '.join(item['genres'])})"
        )
    return "\n".join(lines)
