from __future__ import annotations

import argparse
import sys

from benches import apply, sha256, suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    sha256.add_parser(sub)
    apply.add_parser(sub)
    suite.add_parser(sub)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
