"""Point-in-time-correct training frames: ``get_historical_features`` over (entity, event timestamp).

Each example row joins, per view, the newest feature row with ``event_timestamp <= the example's
timestamp`` and within the view's TTL: features computed from events strictly before the row's cut-off,
so an example never sees its own event or anything after it (tested with a constructed case). A row
with no feature row gets the documented defaults of ``movierec.feature_views``.

A frame is reproducible from its spec (the versioned view names and the entity rows): a later version
of a view is a new view and leaves these untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd  # type: ignore[import-untyped]  # no stubs in the venv
from feast import FeatureStore

from movierec.feature_views import ViewSpec, view

EVENT_TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class TrainingSetSpec:
    """What a run records to rebuild its training frame exactly."""

    views: list[str]  # versioned view names

    def resolve(self) -> list[ViewSpec]:
        return [view(name) for name in self.views]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> TrainingSetSpec:
        return cls(**json.loads(raw))


def _fill(frame: pd.DataFrame, specs: Sequence[ViewSpec]) -> pd.DataFrame:
    for spec in specs:
        for feature in spec.features:
            default: Any = feature.default
            column = frame[feature.name]
            if isinstance(default, tuple):
                frame[feature.name] = [list(default) if v is None else v for v in column]
            else:
                frame[feature.name] = column.astype("float64" if isinstance(default, float) else object)
                frame[feature.name] = frame[feature.name].fillna(default)
    return frame


def training_frame(
    store: FeatureStore, entity_df: pd.DataFrame, specs: Sequence[ViewSpec], fill_defaults: bool = True
) -> pd.DataFrame:
    """``entity_df`` (join keys + ``event_timestamp``, tz-aware UTC, plus any label columns) with the
    spec's features joined as of each row, in the entity dataframe's order.

    Views are joined one by one with Feast's plain feature names (two views may share a name, e.g.
    ``mean_rating``: each then gets its view's prefix, ``user_activity_v1__mean_rating``)."""
    frame = entity_df.reset_index(drop=True).copy()
    frame["_row"] = range(len(frame))
    names = [f.name for s in specs for f in s.features]
    clashes = {n for n in names if names.count(n) > 1}
    refs = [f"{s.name}:{f.name}" for s in specs for f in s.features]
    result = store.get_historical_features(
        entity_df=frame, features=refs, full_feature_names=bool(clashes)
    ).to_df()
    # Feast's dask store drops an entity row whose every feature row is newer than it (the TTL filter
    # runs after the left join, feast/infra/offline_stores/dask.py `_filter_ttl`): such an example had
    # no feature yet, so it is put back here with nulls, which become the defaults below.
    joined = [c for c in result.columns if c not in frame.columns]
    result = frame.merge(result[["_row", *joined]], on="_row", how="left", validate="one_to_one")
    result = result.sort_values("_row").reset_index(drop=True).drop(columns="_row")
    if fill_defaults:
        if clashes:
            renamed = {f"{s.name}__{f.name}": f.name for s in specs for f in s.features}
            for s in specs:
                chunk = result[[f"{s.name}__{f.name}" for f in s.features]].rename(columns=renamed)
                filled = _fill(chunk.copy(), [s])
                for f in s.features:
                    result[f"{s.name}__{f.name}"] = filled[f.name]
        else:
            result = _fill(result, specs)
    return result
