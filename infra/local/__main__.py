"""``python -m infra.local``: the local cloud and a docker-free ``sam local``.

Each command module registers its own sub-commands; this file only wires them together.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from infra.local import cloud, jobs, runner
from infra.local.demo import register as register_demo
from infra.local.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    cloud.register(commands)
    runner.register(commands)
    jobs.register(commands)
    register_demo(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
