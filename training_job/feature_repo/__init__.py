"""The Feast feature repository (docs/features.md).

- ``definitions``: the entities and versioned feature views, built from ``movierec.feature_views``
  (the contract the serving layer's thin reader shares);
- ``settings`` / ``store``: where the offline Parquet, the registry and the online store are, as a
  ``RepoConfig`` generated from settings (no hard-coded endpoints), and a ``feature_store.yaml`` for
  the ``feast`` CLI;
- ``compute``: the feature tables of a dataset as of a cut-off (from ``training_job/features.py``);
- ``stage``: ``python -m training_job features`` (write dated Parquet, apply, materialize
  incrementally) and ``features backfill --start --end``;
- ``training_set``: point-in-time-correct training frames through ``get_historical_features``.

Feast is imported only here, never by the Lambda layer.
"""
