"""Online quality: engagement joined to what was served, by ``recommendation_id``, within a window.

For each served list (``movierec.served.ServedList``, deduplicated by id) the job looks at the events
that carry its id and occurred within ``window_seconds`` after it was served:

- the list counts as **impressed** when an impression event carries its id (lists the client never
  showed are left out of every rate);
- **CTR@k**: the share of impressed lists with a click on one of its first k movies;
- **watch-through@k**: the share with a watch of one of its first k movies to at least
  ``WATCH_THROUGH_COMPLETION`` of the runtime;
- **coverage@k**: distinct movies in the first k positions of the group's lists over the catalogue.

A list clicked twice counts once; a repeated event (same ``event_id``) counts once; an event outside the
window, on a movie that was not in the list's first k, or without an id (``unattributed``) counts for
no list. Rates are grouped by tier, model version and variant, each with a Wilson score interval; an
experiment's variants are compared with its control by the difference of two proportions and its
normal interval. docs/experimentation.md describes the method.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from movierec.events import ClickEvent, Event, ImpressionEvent, RatingEvent, WatchEvent
from movierec.served import ServedList

Z_95 = 1.959963984540054
WATCH_THROUGH_COMPLETION = 0.9
DEFAULT_K = 10
DEFAULT_WINDOW_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def wilson(successes: int, n: int, z: float = Z_95) -> Interval:
    """The Wilson score interval of a proportion (the point estimate is the plain share)."""
    if n == 0:
        return Interval(0.0, 0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Difference:
    """A variant's proportion minus the control's, with its normal (Wald) interval."""

    estimate: float
    low: float
    high: float
    significant: bool  # the interval excludes zero


def difference(s1: int, n1: int, s2: int, n2: int, z: float = Z_95) -> Difference:
    if n1 == 0 or n2 == 0:
        return Difference(0.0, -1.0, 1.0, False)
    p1, p2 = s1 / n1, s2 / n2
    half = z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    estimate = p1 - p2
    return Difference(estimate, estimate - half, estimate + half, half > 0 and abs(estimate) > half)


@dataclass(frozen=True)
class GroupMetrics:
    tier: str
    model_version: str | None
    variant: str | None
    experiment: str | None
    served: int
    impressed: int
    clicked: int
    watched: int
    rated: int
    ctr: Interval
    watch_through: Interval
    coverage: float


@dataclass(frozen=True)
class VariantComparison:
    experiment: str
    variant: str
    control: str
    impressed: int
    ctr: Interval
    control_ctr: Interval
    ctr_difference: Difference
    watch_through: Interval
    watch_through_difference: Difference


@dataclass
class Attribution:
    k: int
    window_seconds: float
    served: int
    impressed: int
    ctr: Interval
    watch_through: Interval
    coverage: float
    groups: list[GroupMetrics]
    comparisons: list[VariantComparison]
    unattributed: dict[str, int] = field(default_factory=dict)  # events without an id, by type
    outside_window: int = 0
    unknown_list: int = 0  # events whose id names no served list read
    duplicates: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Outcome:
    impressed: bool = False
    clicked: bool = False
    watched: bool = False
    rated: bool = False


def attribute(
    served: Iterable[ServedList],
    events: Iterable[Event],
    *,
    catalogue_size: int,
    k: int = DEFAULT_K,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    controls: dict[str, str] | None = None,
) -> Attribution:
    """``controls`` names each experiment's control variant (its configuration's ``control``); without
    one, a variant named ``champion`` or ``control`` is it."""
    lists: dict[str, ServedList] = {}
    for record in served:
        lists.setdefault(record.recommendation_id, record)
    outcomes = {rid: _Outcome() for rid in lists}
    seen_events: set[str] = set()
    unattributed: dict[str, int] = defaultdict(int)
    outside = unknown = duplicates = 0
    for event in events:
        if not isinstance(event, ImpressionEvent | ClickEvent | WatchEvent | RatingEvent):
            continue
        if str(event.event_id) in seen_events:
            duplicates += 1
            continue
        seen_events.add(str(event.event_id))
        rid = event.recommendation_id
        if rid is None:
            unattributed[event.type.value] += 1
            continue
        listed = lists.get(rid)
        if listed is None:
            unknown += 1
            continue
        record = listed
        elapsed = event.occurred_at.timestamp() - record.served_at
        if not 0 <= elapsed <= window_seconds:
            outside += 1
            continue
        outcome = outcomes[rid]
        if isinstance(event, ImpressionEvent):
            outcome.impressed = True
            continue
        position = record.position(event.movie_id)
        if position is None or position >= k:
            continue
        if isinstance(event, ClickEvent):
            outcome.clicked = True
        elif isinstance(event, WatchEvent):
            outcome.watched = outcome.watched or event.completion >= WATCH_THROUGH_COMPLETION
        else:
            outcome.rated = True

    groups: dict[tuple[str, str | None, str | None, str | None], list[str]] = defaultdict(list)
    for rid, record in lists.items():
        groups[(record.tier, record.model_version, record.variant, record.experiment)].append(rid)
    group_metrics = [
        _group(key, ids, lists, outcomes, catalogue_size, k) for key, ids in sorted(groups.items(), key=str)
    ]
    everything = _group(("all", None, None, None), list(lists), lists, outcomes, catalogue_size, k)
    return Attribution(
        k=k,
        window_seconds=window_seconds,
        served=everything.served,
        impressed=everything.impressed,
        ctr=everything.ctr,
        watch_through=everything.watch_through,
        coverage=everything.coverage,
        groups=group_metrics,
        comparisons=_compare(lists, outcomes, controls or {}),
        unattributed=dict(unattributed),
        outside_window=outside,
        unknown_list=unknown,
        duplicates=duplicates,
    )


def _group(
    key: tuple[str, str | None, str | None, str | None],
    ids: Sequence[str],
    lists: dict[str, ServedList],
    outcomes: dict[str, _Outcome],
    catalogue_size: int,
    k: int,
) -> GroupMetrics:
    impressed = [rid for rid in ids if outcomes[rid].impressed]
    clicked = sum(outcomes[rid].clicked for rid in impressed)
    watched = sum(outcomes[rid].watched for rid in impressed)
    rated = sum(outcomes[rid].rated for rid in impressed)
    movies = {m for rid in ids for m in lists[rid].movie_ids[:k]}
    return GroupMetrics(
        tier=key[0],
        model_version=key[1],
        variant=key[2],
        experiment=key[3],
        served=len(ids),
        impressed=len(impressed),
        clicked=clicked,
        watched=watched,
        rated=rated,
        ctr=wilson(clicked, len(impressed)),
        watch_through=wilson(watched, len(impressed)),
        coverage=len(movies) / catalogue_size if catalogue_size else 0.0,
    )


def _compare(
    lists: dict[str, ServedList], outcomes: dict[str, _Outcome], controls: dict[str, str]
) -> list[VariantComparison]:
    by_variant: dict[str, dict[str, list[_Outcome]]] = defaultdict(lambda: defaultdict(list))
    for rid, record in lists.items():
        if record.experiment is not None and record.variant is not None and outcomes[rid].impressed:
            by_variant[record.experiment][record.variant].append(outcomes[rid])
    comparisons = []
    for experiment, variants in sorted(by_variant.items()):
        control = controls.get(experiment) or next(
            (name for name in ("champion", "control") if name in variants), None
        )
        if control is None or control not in variants:
            continue
        base = variants[control]
        base_clicks, base_watches = sum(o.clicked for o in base), sum(o.watched for o in base)
        for name, group in sorted(variants.items()):
            if name == control:
                continue
            clicks, watches = sum(o.clicked for o in group), sum(o.watched for o in group)
            comparisons.append(
                VariantComparison(
                    experiment=experiment,
                    variant=name,
                    control=control,
                    impressed=len(group),
                    ctr=wilson(clicks, len(group)),
                    control_ctr=wilson(base_clicks, len(base)),
                    ctr_difference=difference(clicks, len(group), base_clicks, len(base)),
                    watch_through=wilson(watches, len(group)),
                    watch_through_difference=difference(watches, len(group), base_watches, len(base)),
                )
            )
    return comparisons


def report_markdown(result: Attribution) -> str:
    """The run report's online section: each group's rates and each variant against its control."""

    def pct(interval: Interval) -> str:
        return f"{interval.estimate:.2%} [{interval.low:.2%}, {interval.high:.2%}]"

    lines = [
        f"# Online metrics (k={result.k}, window {result.window_seconds / 3600:g} h)",
        "",
        f"Served lists {result.served}, impressed {result.impressed}; CTR@{result.k} {pct(result.ctr)}, "
        f"watch-through@{result.k} {pct(result.watch_through)}, coverage {result.coverage:.2%}.",
        f"Not attributed: {result.unattributed or 0} without an id, {result.outside_window} outside the "
        f"window, {result.unknown_list} naming no served list, {result.duplicates} duplicates.",
        "",
        "| tier | model version | variant | impressed | CTR@k (95% Wilson) | watch-through@k | coverage |",
        "|---|---|---|---:|---|---|---:|",
    ]
    for g in result.groups:
        lines.append(
            f"| {g.tier} | {g.model_version or '-'} | {g.variant or '-'} | {g.impressed} | {pct(g.ctr)} "
            f"| {pct(g.watch_through)} | {g.coverage:.2%} |"
        )
    if result.comparisons:
        lines += [
            "",
            "| experiment | variant vs control | impressed | CTR@k | control CTR@k | difference (95%)"
            " | significant |",
            "|---|---|---:|---|---|---|---|",
        ]
        for c in result.comparisons:
            d = c.ctr_difference
            lines.append(
                f"| {c.experiment} | {c.variant} vs {c.control} | {c.impressed} | {pct(c.ctr)} "
                f"| {pct(c.control_ctr)} | {d.estimate:+.2%} [{d.low:+.2%}, {d.high:+.2%}] "
                f"| {'yes' if d.significant else 'no'} |"
            )
    return "\n".join(lines) + "\n"
