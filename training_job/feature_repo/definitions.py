"""Feast's objects for ``movierec.feature_views``: one ``Entity`` per entity, one ``FileSource`` and one
``FeatureView`` per versioned view over ``<offline root>/<view>/date=YYYY-MM-DD/*.parquet``."""

from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, ComplexFeastType, Float32, Int64, PrimitiveFeastType, String

from movierec.feature_views import VIEWS, EntitySpec, Kind, ViewSpec

TIMESTAMP = "event_timestamp"
"""Every source's event-time column: the instant the row's features were computed as of (exclusive)."""

_TYPES: dict[Kind, PrimitiveFeastType | ComplexFeastType] = {
    Kind.FLOAT32: Float32,
    Kind.INT64: Int64,
    Kind.STRING: String,
    Kind.STRING_LIST: Array(String),
    Kind.FLOAT32_LIST: Array(Float32),
}


def entity(spec: EntitySpec) -> Entity:
    value_type = ValueType.INT64 if spec.kind is Kind.INT64 else ValueType.STRING
    return Entity(name=spec.name, join_keys=[spec.join_key], value_type=value_type)


def view_path(offline_root: str, spec: ViewSpec) -> str:
    return f"{offline_root.rstrip('/')}/{spec.name}"


def feature_view(spec: ViewSpec, offline_root: str, s3_endpoint: str | None = None) -> FeatureView:
    source = FileSource(
        name=f"{spec.name}_source",
        path=view_path(offline_root, spec),
        timestamp_field=TIMESTAMP,
        s3_endpoint_override=s3_endpoint if offline_root.startswith("s3://") else None,
    )
    return FeatureView(
        name=spec.name,
        entities=[entity(spec.entity)],
        ttl=timedelta(days=spec.ttl_days),
        schema=[Field(name=f.name, dtype=_TYPES[f.kind], description=f.description) for f in spec.features],
        source=source,
        online=True,
        description=spec.description,
    )


def all_objects(
    offline_root: str, s3_endpoint: str | None = None, views: tuple[ViewSpec, ...] = VIEWS
) -> list[Entity | FeatureView]:
    """What ``apply`` registers: the entities of ``views`` and the views themselves."""
    entities = {spec.entity.name: entity(spec.entity) for spec in views}
    return [*entities.values(), *(feature_view(spec, offline_root, s3_endpoint) for spec in views)]
