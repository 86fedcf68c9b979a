"""python -m receiver [--address A] [--port P] [--file F]; each flag also from RECEIVER_*."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from receiver.server import serve
from receiver.store import PayloadStore


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(prog="receiver", description="Local Alertmanager webhook receiver.")
    parser.add_argument("--address", default=env.get("RECEIVER_ADDRESS", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=env.get("RECEIVER_PORT", "9097"))
    parser.add_argument(
        "--file",
        type=Path,
        default=Path(env.get("RECEIVER_FILE", "alerts.jsonl")),
        help="JSON-lines file every payload is appended to",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port")
    # SIGTERM from supervisor or docker: stop cleanly like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        store = PayloadStore(args.file)
    except OSError as exc:
        print(f"receiver: cannot use --file {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        serve(args.address, args.port, store)
    except OSError as exc:
        print(f"receiver: cannot listen on {args.address}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
