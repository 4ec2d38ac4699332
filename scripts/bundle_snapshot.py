"""Bundles the latest popularity snapshot into the recommend function's package, for ``sam build``.

``python scripts/bundle_snapshot.py --bucket ARTIFACT_BUCKET [--out PATH]``

The training job writes the snapshot to ``s3://ARTIFACT_BUCKET/snapshots/popularity.json`` at every
publication; this copies it to ``functions/recommend/popularity-snapshot.json``, the file the template's
``POPULARITY_SNAPSHOT_PATH`` names, so the deployed package carries it. At init the function prefers the
S3 object and falls back to this copy when S3 is unreachable (movierec/recommend/wiring.py). Before the
first publication there is nothing to bundle: it says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from movierec.recommend.snapshot import SNAPSHOT_KEY, PopularitySnapshot
from movierec.stores.blobs import BlobStore

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "functions" / "recommend" / "popularity-snapshot.json"


def bundle(bucket: str, out: Path) -> PopularitySnapshot | None:
    """The snapshot written to ``out`` (validated first: a corrupt one is not shipped), or None."""
    blobs = BlobStore(bucket)
    raw = blobs.get(SNAPSHOT_KEY)
    if raw is None:
        return None
    snapshot = PopularitySnapshot.parse(raw, blobs.uri(SNAPSHOT_KEY))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    partial.write_bytes(raw)
    partial.replace(out)  # a build never packages half a file
    return snapshot


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bundle_snapshot.py", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--bucket", required=True, help="the stack's ArtifactBucketName output")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    arguments = parser.parse_args(argv)
    snapshot = bundle(arguments.bucket, arguments.out)
    if snapshot is None:
        print(f"no snapshot in s3://{arguments.bucket}/{SNAPSHOT_KEY} yet: nothing bundled", file=sys.stderr)
        return 0
    print(f"bundled {len(snapshot.items)} movies of version {snapshot.version} into {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
