"""How much of a user's history the model reads: one number for training, ingest and serving."""

from __future__ import annotations

HISTORY_LENGTH = 50
"""A user's latest engagements the model reads (its fold-in today): training fits on this many, ingest
keeps at least this many in the Redis recent list, and serving reads this many. A different number in
any of the three is a train/serve skew."""
