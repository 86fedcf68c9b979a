"""python -m native up|status|down|demo: the stack without Docker (see native/README.md)."""

from __future__ import annotations

import sys

COMMANDS = ("up", "status", "down", "demo")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print(f"usage: python -m native {{{'|'.join(COMMANDS)}}}", file=sys.stderr)
        return 2
    if argv[0] == "demo":
        from native.demo import demo

        return demo()
    from native import stack

    return getattr(stack, argv[0])()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
