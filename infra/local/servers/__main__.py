"""``python -m infra.local.servers mongoeco --port P --path FILE``: what MongoServer runs in .venv-mongo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from infra.local.servers.mongoeco import serve_mongoeco


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.servers")
    commands = parser.add_subparsers(dest="command", required=True)
    mongoeco = commands.add_parser("mongoeco", help="serve mongoeco over the MongoDB wire protocol")
    mongoeco.add_argument("--port", type=int, required=True)
    mongoeco.add_argument("--path", type=Path, required=True, help="the SQLite file holding the data")
    args = parser.parse_args(argv)
    serve_mongoeco(args.port, args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
