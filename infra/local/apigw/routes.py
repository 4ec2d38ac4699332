"""Route matching as API Gateway does it: exact paths, then ``{variables}``, then ``{proxy+}``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from infra.local.template import Route

_VARIABLE = re.compile(r"^\{([A-Za-z0-9_.-]+)(\+?)\}$")


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


def _match_path(template: str, path: str) -> dict[str, str] | None:
    wanted = template.strip("/").split("/") if template.strip("/") else []
    given = path.strip("/").split("/") if path.strip("/") else []
    parameters: dict[str, str] = {}
    for index, segment in enumerate(wanted):
        variable = _VARIABLE.match(segment)
        if variable and variable.group(2):  # {proxy+}: the rest of the path, at least one segment
            rest = given[index:]
            if not rest:
                return None
            parameters[variable.group(1)] = "/".join(rest)
            return parameters
        if index >= len(given):
            return None
        if variable:
            if not given[index]:
                return None
            parameters[variable.group(1)] = given[index]
        elif segment != given[index]:
            return None
    return parameters if len(given) == len(wanted) else None


def _specificity(route: Route) -> tuple[int, int, int, int]:
    segments = route.path.strip("/").split("/")
    greedy = any(s.endswith("+}") for s in segments)
    variables = sum(1 for s in segments if _VARIABLE.match(s))
    # API Gateway prefers exact paths, then fewer variables, then longer paths, then a named method.
    return (int(greedy), variables, -len(segments), int(route.method == "ANY"))


def match_route(routes: Sequence[Route], method: str, path: str) -> RouteMatch | None:
    candidates = []
    for route in routes:
        if route.path == "$default" or route.method not in {method.upper(), "ANY"}:
            continue
        parameters = _match_path(route.path, path)
        if parameters is not None:
            candidates.append((_specificity(route), route, parameters))
    if candidates:
        _, route, parameters = min(candidates, key=lambda item: item[0])
        return RouteMatch(route, parameters)
    fallback = next((route for route in routes if route.path == "$default"), None)
    return RouteMatch(fallback, {}) if fallback else None
