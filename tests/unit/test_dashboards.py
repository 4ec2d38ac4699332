"""The CloudWatch dashboard and alarms in template.yaml and the Grafana dashboard
(infra/grafana/movierec.json), against the metrics the code emits (movierec.observability.MetricName)
and against each other."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.local.template import DEFAULT_TEMPLATE, Stack
from movierec.observability import METRIC_NAMESPACE, MetricName
from movierec.recommend.service import Tier

REPO_ROOT = Path(__file__).resolve().parents[2]
GRAFANA = REPO_ROOT / "infra" / "grafana" / "movierec.json"
ASL = REPO_ROOT / "infra" / "statemachine" / "training.asl.json"

# The dimensions each metric is emitted with: Powertools adds `service` (POWERTOOLS_SERVICE_NAME), ingest
# adds `type` to IngestedEvents, recommend adds `tier` to every request metric (FallbackReason: `from_tier`
# and `reason`), and Powertools' cold-start
# metric carries `function_name`. A dashboard or alarm naming other dimensions would show nothing.
DIMENSIONS: dict[str, tuple[set[str], set[str]]] = {
    MetricName.INGESTED_EVENTS: ({"service", "type"}, {"ingest"}),
    MetricName.INVALID_EVENTS: ({"service"}, {"ingest"}),
    MetricName.DUPLICATE_EVENTS: ({"service"}, {"ingest"}),
    MetricName.DEAD_LETTERED_RECORDS: ({"service"}, {"ingest"}),
    MetricName.TRANSIENT_FAILURES: ({"service"}, {"ingest"}),
    MetricName.WRITE_LATENCY_MS: ({"service"}, {"ingest"}),
    MetricName.ITERATOR_AGE_MS: ({"service"}, {"ingest"}),
    MetricName.TIER_LATENCY_MS: ({"service", "tier"}, {"recommend"}),
    MetricName.FALLBACK: ({"service", "tier"}, {"recommend"}),
    MetricName.FALLBACK_REASON: ({"from_tier", "reason", "service"}, {"recommend"}),
    MetricName.COLD_START: ({"function_name", "service"}, {"ingest", "recommend"}),
    MetricName.MODEL_PUBLISHED: ({"service"}, {"training"}),
    # The state machine records a rejection too (service=pipeline), in case the job's metrics are lost.
    MetricName.GATE_REJECTED: ({"service"}, {"training", "pipeline"}),
    MetricName.MODEL_NDCG_AT_10: ({"service"}, {"training"}),
    # the attribution stage (training_job/attribution_stage.py)
    MetricName.ONLINE_CTR_AT_K: ({"service"}, {"training"}),
    MetricName.ONLINE_WATCH_THROUGH_AT_K: ({"service"}, {"training"}),
    MetricName.ONLINE_COVERAGE: ({"service"}, {"training"}),
    MetricName.ONLINE_IMPRESSED_LISTS: ({"service"}, {"training"}),
    MetricName.ONLINE_GROUP_CTR_AT_K: ({"model_version", "service", "tier", "variant"}, {"training"}),
    MetricName.EXPERIMENT_CTR_DIFFERENCE: ({"experiment", "service", "variant"}, {"training"}),
}

REQUIRED_ALARMS = {
    "ApiLatencyAlarm",
    "ApiServerErrorAlarm",
    "FallbackRateAlarm",
    "IngestIteratorAgeAlarm",
    "DeadLetterDepthAlarm",
    "TrainingFailureAlarm",
    "ModelQualityAlarm",
    "OnlineQualityAlarm",
}


@dataclass(frozen=True)
class MetricRef:
    """One metric a dashboard panel or an alarm reads; ``*`` as a dimension value is a wildcard."""

    where: str
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]

    @property
    def dimension_map(self) -> dict[str, str]:
        return dict(self.dimensions)


_SEARCH = re.compile(r"SEARCH\(\s*'\{([^}]*)\}([^']*)'")
_FILTER = re.compile(r'(\w+)\s*=\s*\\?"([^"\\]*)\\?"')


def search_refs(expression: str, where: str) -> Iterator[MetricRef]:
    """Metrics a SEARCH expression selects: its schema {Namespace,dim,...} and MetricName="X"."""
    for match in _SEARCH.finditer(expression):
        namespace, *keys = [part.strip() for part in match.group(1).split(",")]
        filters = dict(_FILTER.findall(match.group(2)))
        name = filters.pop("MetricName")
        dimensions = {key: filters.get(key, "*") for key in keys}
        yield MetricRef(where, namespace, name, tuple(sorted(dimensions.items())))


# ---- reading the three sources ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloudwatch() -> dict[str, Any]:
    """The dashboard body as CloudFormation would render it for a local stack (parameter defaults)."""
    stack = Stack.load(DEFAULT_TEMPLATE)
    body = stack.resolve(stack.resources["Dashboard"]["Properties"]["DashboardBody"])
    loaded: dict[str, Any] = json.loads(body)
    return loaded


@pytest.fixture(scope="module")
def grafana() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(GRAFANA.read_text())
    return loaded


def cloudwatch_refs(body: dict[str, Any]) -> Iterator[MetricRef]:
    for widget in body["widgets"]:
        properties = widget["properties"]
        where = f"CloudWatch: {properties['title']}"
        previous: list[Any] = []
        for item in properties.get("metrics", []):
            if isinstance(item, dict):
                yield from search_refs(item["expression"], where)
                continue
            row = [part for part in item if not isinstance(part, dict)]
            if row[:1] == ["..."]:
                row = previous[: len(previous) - len(row) + 1] + row[1:]
            row = [previous[i] if part == "." else part for i, part in enumerate(row)]
            previous = row
            pairs = tuple(sorted(zip(row[2::2], row[3::2], strict=True)))
            yield MetricRef(where, row[0], row[1], pairs)


def grafana_refs(dashboard: dict[str, Any]) -> Iterator[MetricRef]:
    for panel in dashboard["panels"]:
        where = f"Grafana: {panel['title']}"
        for target in panel["targets"]:
            if target.get("metricName"):
                pairs = tuple(sorted((k, str(v)) for k, v in target["dimensions"].items()))
                yield MetricRef(where, target["namespace"], target["metricName"], pairs)
            yield from search_refs(target.get("expression") or "", where)


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def alarm_refs(template: dict[str, Any]) -> Iterator[MetricRef]:
    for name, alarm in alarms(template).items():
        where = f"alarm {name}"
        if "MetricName" in alarm:
            pairs = tuple(sorted((d["Name"], str(d["Value"])) for d in alarm.get("Dimensions", [])))
            yield MetricRef(where, alarm["Namespace"], alarm["MetricName"], pairs)
        for query in alarm.get("Metrics", []):
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                pairs = tuple(sorted((d["Name"], str(d["Value"])) for d in metric.get("Dimensions", [])))
                yield MetricRef(where, metric["Namespace"], metric["MetricName"], pairs)


def state_machine_refs() -> Iterator[MetricRef]:
    for name, state in json.loads(ASL.read_text())["States"].items():
        if state.get("Resource", "").endswith(":cloudwatch:putMetricData"):
            for datum in state["Parameters"]["MetricData"]:
                pairs = tuple(sorted((d["Name"], d["Value"]) for d in datum["Dimensions"]))
                yield MetricRef(f"state {name}", state["Parameters"]["Namespace"], datum["MetricName"], pairs)


# ---- every metric is shown, and only metrics the code emits are read -------------------------------------


@pytest.mark.parametrize("source", ["cloudwatch", "grafana"])
def test_every_custom_metric_is_on_the_dashboard(
    source: str, cloudwatch: dict[str, Any], grafana: dict[str, Any]
) -> None:
    refs = cloudwatch_refs(cloudwatch) if source == "cloudwatch" else grafana_refs(grafana)
    shown = {ref.name for ref in refs if ref.namespace == METRIC_NAMESPACE}
    missing = sorted(set(MetricName) - shown)
    assert not missing, f"metrics without a panel on the {source} dashboard: {missing}"


def test_every_movierec_metric_read_anywhere_is_one_the_code_emits(
    template: dict[str, Any], cloudwatch: dict[str, Any], grafana: dict[str, Any]
) -> None:
    refs = [
        *cloudwatch_refs(cloudwatch),
        *grafana_refs(grafana),
        *alarm_refs(template),
        *state_machine_refs(),
    ]
    ours = [ref for ref in refs if ref.namespace == METRIC_NAMESPACE]
    assert {ref.where.split(":")[0] for ref in ours} >= {"CloudWatch", "Grafana"}
    unknown = sorted({f"{ref.where}: {ref.name}" for ref in ours if ref.name not in set(MetricName)})
    assert not unknown, f"not in movierec.observability.MetricName: {unknown}"
    for ref in ours:
        keys, services = DIMENSIONS[MetricName(ref.name)]
        assert set(ref.dimension_map) == keys, f"{ref.where}: {ref.name} is emitted with {sorted(keys)}"
        service = ref.dimension_map["service"]
        assert service == "*" or service in services, f"{ref.where}: {ref.name} comes from {services}"
        tier = ref.dimension_map.get("tier", "*")
        assert tier == "*" or tier in set(Tier), f"{ref.where}: no tier {tier}"
    namespaces = {ref.namespace for ref in refs}
    assert namespaces <= {METRIC_NAMESPACE, "AWS/ApiGateway", "AWS/Lambda", "AWS/SQS", "AWS/States"}


# ---- the two dashboards show the same panels --------------------------------------------------------------


def test_both_dashboards_have_the_same_panels_reading_the_same_metrics(
    cloudwatch: dict[str, Any], grafana: dict[str, Any]
) -> None:
    cloudwatch_titles = [widget["properties"]["title"] for widget in cloudwatch["widgets"]]
    grafana_titles = [panel["title"] for panel in grafana["panels"]]
    assert cloudwatch_titles == grafana_titles
    assert len(set(grafana_titles)) == len(grafana_titles)

    def by_panel(refs: Iterator[MetricRef]) -> dict[str, set[tuple[str, str, tuple[str, ...]]]]:
        panels: dict[str, set[tuple[str, str, tuple[str, ...]]]] = {}
        for ref in refs:
            title = ref.where.split(": ", 1)[1]
            panels.setdefault(title, set()).add((ref.namespace, ref.name, tuple(sorted(ref.dimension_map))))
        return panels

    assert by_panel(cloudwatch_refs(cloudwatch)) == by_panel(grafana_refs(grafana))


def test_alarm_thresholds_drawn_on_both_dashboards_agree(
    template: dict[str, Any], cloudwatch: dict[str, Any], grafana: dict[str, Any]
) -> None:
    raw_body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    drawn = set(re.findall(r'"value": \$\{(\w+)\}', raw_body))
    assert drawn == {
        "ApiLatencyThresholdMs",
        "FallbackRateThresholdPercent",
        "IteratorAgeThresholdMs",
        "ModelNdcgThreshold",
        "OnlineCtrThreshold",
    }
    panels = {panel["title"]: panel for panel in grafana["panels"]}
    for widget in cloudwatch["widgets"]:
        properties = widget["properties"]
        lines = properties.get("annotations", {}).get("horizontal", [])
        steps = panels[properties["title"]]["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
        grafana_lines = [step["value"] for step in steps if step["value"] is not None]
        assert [line["value"] for line in lines] == grafana_lines, properties["title"]


def test_grafana_dashboard_reads_cloudwatch_through_variables(grafana: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in grafana["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "cloudwatch"
    assert {"region", "stack", "api_id", "state_machine_arn"} <= set(variables)
    for panel in grafana["panels"]:
        assert panel["datasource"] == {"type": "cloudwatch", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["queryMode"] == "Metrics"
            assert target["region"] == "$region"
    text = GRAFANA.read_text()
    for name in ("ingest", "recommend", "ingest-dlq"):
        assert "${stack}-" + name in text
    assert grafana["uid"] == "movierec-overview"


# ---- metric math is well-formed (ids exist, alarms stay within CloudWatch's limits) ------------------------

_FUNCTIONS = re.compile(r"'[^']*'|\"[^\"]*\"")
_IDENTIFIER = re.compile(r"\b([a-z][A-Za-z0-9_]*)\b")


def expression_ids(expression: str) -> set[str]:
    return set(_IDENTIFIER.findall(_FUNCTIONS.sub("", expression)))


def test_every_math_expression_uses_ids_defined_next_to_it(
    template: dict[str, Any], cloudwatch: dict[str, Any], grafana: dict[str, Any]
) -> None:
    groups: list[tuple[str, list[str], set[str]]] = []
    for widget in cloudwatch["widgets"]:
        items = widget["properties"]["metrics"]
        ids = {i["id"] for i in items if isinstance(i, dict)}
        options = [part for row in items if isinstance(row, list) for part in row if isinstance(part, dict)]
        ids |= {option["id"] for option in options if "id" in option}
        expressions = [i["expression"] for i in items if isinstance(i, dict)]
        groups.append((widget["properties"]["title"], expressions, ids))
    for panel in grafana["panels"]:
        ids = {target["id"] for target in panel["targets"] if target["id"]}
        assert len(ids) == len([t for t in panel["targets"] if t["id"]]), panel["title"]
        groups.append((panel["title"], [t["expression"] for t in panel["targets"] if t["expression"]], ids))
    for name, alarm in alarms(template).items():
        queries = alarm.get("Metrics", [])
        ids = {query["Id"] for query in queries}
        expressions = [q["Expression"] for q in queries if isinstance(q.get("Expression"), str)]
        expressions += [q["Expression"]["Fn::Sub"] for q in queries if isinstance(q.get("Expression"), dict)]
        groups.append((name, expressions, ids))
    for where, expressions, ids in groups:
        for expression in expressions:
            if "SEARCH(" in expression:
                continue
            unknown = expression_ids(expression) - ids
            assert not unknown, f"{where}: {expression} uses undefined {sorted(unknown)}"


def test_alarms_cover_the_design_notify_the_topic_and_stay_within_limits(template: dict[str, Any]) -> None:
    defined = alarms(template)
    assert set(defined) >= REQUIRED_ALARMS
    for name, alarm in defined.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["TreatMissingData"] == "notBreaching", name
        queries = alarm.get("Metrics", [])
        if not queries:
            continue
        assert sum("MetricStat" in query for query in queries) <= 10, f"{name}: at most 10 metrics"
        assert sum(query["ReturnData"] for query in queries) == 1, f"{name}: one expression is watched"
        assert all(re.match(r"^[a-z][A-Za-z0-9_]*$", query["Id"]) for query in queries), name
        assert "SEARCH" not in json.dumps(queries), f"{name}: alarms cannot use SEARCH"


def test_the_fallback_alarm_counts_every_tier(template: dict[str, Any]) -> None:
    queries = alarms(template)["FallbackRateAlarm"]["Metrics"]
    tiers: dict[str, set[str]] = {}
    for query in queries:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            tiers.setdefault(metric["MetricName"], set()).add(dimensions["tier"])
    assert tiers == {"Fallback": set(Tier), "TierLatencyMs": set(Tier)}, "a new tier needs its two metrics"


def test_the_ingest_lag_alarm_watches_the_mapping_and_the_code(template: dict[str, Any]) -> None:
    refs = [ref for ref in alarm_refs(template) if ref.where == "alarm IngestIteratorAgeAlarm"]
    assert {(ref.namespace, ref.name) for ref in refs} == {
        ("AWS/Lambda", "IteratorAge"),
        (METRIC_NAMESPACE, MetricName.ITERATOR_AGE_MS),
    }
    quality = [ref for ref in alarm_refs(template) if ref.where == "alarm ModelQualityAlarm"]
    assert {ref.name for ref in quality} == {MetricName.MODEL_NDCG_AT_10, MetricName.GATE_REJECTED}
    expression = alarms(template)["ModelQualityAlarm"]["Metrics"][0]["Expression"]["Fn::Sub"]
    assert "${ModelNdcgThreshold}" in expression
