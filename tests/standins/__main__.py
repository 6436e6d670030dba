"""`python -m tests.standins [--force]`: build the stand-in images and print the offline bundle's path.

A CI job or a developer runs this once before the slow tests so the build cost shows up on its own.
"""

from __future__ import annotations

import argparse
import sys

from tests import standins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.standins", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild every image even if its recipe is unchanged")
    args = parser.parse_args(argv)
    if args.force:
        standins.build_base(force=True)
    print(standins.bundle(force=args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
