"""python -m prometheus.generate [--check] [--config alerting.yml]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prometheus.generate.config import DEFAULT_PATH, ConfigError, load
from prometheus.generate.render import stale_files, write_tree

REPO = DEFAULT_PATH.parents[1]


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prometheus.generate",
        description="Generate prometheus/rules/<profile>/ from prometheus/alerting.yml.",
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the rule files are stale")
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, help="the alerting YAML (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"prometheus.generate: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_files(config)
        if stale:
            print(
                f"stale rule files: {', '.join(_shown(p) for p in stale)}; run: python -m prometheus.generate",
                file=sys.stderr,
            )
            return 1
        return 0
    for path in write_tree(config):
        print(f"wrote {_shown(path)}" if path.exists() else f"removed {_shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
