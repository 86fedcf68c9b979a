"""Which Prometheus and Alertmanager the stack runs, against what docker-compose.yml pins.

native/install-tools.sh takes them from Debian sid, which moves on: any version within the MAJOR
version compose pins is accepted (the tests decide whether it works), a drift from the pins is a
warning that names both versions, and another major version is an error. Standard library only:
install-tools.sh runs it with the system's python3, before any virtualenv exists.

    python3 native/tool_versions.py --compose docker-compose.yml --tools .tools/bin [--quiet]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

# binary in the tools folder -> the image of docker-compose.yml it stands for
IMAGES = {
    "prometheus": "prom/prometheus",
    "promtool": "prom/prometheus",
    "prometheus-alertmanager": "prom/alertmanager",
    "amtool": "prom/alertmanager",
}
VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def pins(compose_text: str) -> dict[str, str]:
    """image -> pinned version, e.g. {"prom/prometheus": "3.5.3"}."""
    found = dict(re.findall(r"^\s*image:\s*(prom/[\w-]+):v(\d+\.\d+\.\d+)\s*$", compose_text, re.MULTILINE))
    missing = sorted(set(IMAGES.values()) - set(found))
    if missing:
        raise ValueError(f"docker-compose.yml pins no vX.Y.Z version of {', '.join(missing)}")
    return found


def version_of(binary: Path) -> str | None:
    """X.Y.Z of `binary --version` (Debian's "3.5.3+ds1" counts as 3.5.3), None when it does not run."""
    try:
        result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    match = VERSION.search(result.stdout + result.stderr)
    return ".".join(match.groups()) if match and result.returncode == 0 else None


def check(pinned: dict[str, str], installed: dict[str, str | None]) -> tuple[list[str], list[str]]:
    """(errors, warnings): a binary missing or of another major version than its pin is an
    error; any other difference from the pin a warning."""
    errors, warnings = [], []
    for binary, image in IMAGES.items():
        want, got = pinned[image], installed.get(binary)
        if got is None:
            errors.append(f"{binary} is missing or does not run")
        elif got.split(".")[0] != want.split(".")[0]:
            errors.append(
                f"{binary} is {got}, another major version than docker-compose.yml's {image}:v{want}; "
                "pin a Debian mirror that serves the pinned major version (DEBIAN_MIRROR), or move the pin"
            )
        elif got != want:
            warnings.append(
                f"the tests run {binary} {got} but docker-compose.yml pins {image}:v{want}: "
                f"update the pin and the README's tested versions to {got} once the tests pass"
            )
    return errors, warnings


def summary(installed: dict[str, str | None]) -> str:
    return ", ".join(f"{b} {v}" for b, v in installed.items() if v)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="compare the tools the tests run with docker-compose.yml's pins")
    parser.add_argument("--compose", type=Path, required=True)
    parser.add_argument("--tools", type=Path, required=True, help="the folder holding the binaries")
    parser.add_argument("--quiet", action="store_true", help="only the exit status: 0 when usable")
    args = parser.parse_args(argv)
    try:
        pinned = pins(args.compose.read_text())
    except (OSError, ValueError) as exc:
        print(f"install-tools: {exc}", file=sys.stderr)
        return 2
    installed = {b: version_of(args.tools / b) for b in IMAGES}
    errors, warnings = check(pinned, installed)
    if args.quiet:
        return 1 if errors else 0
    for error in errors:
        print(f"install-tools: ERROR: {error}", file=sys.stderr)
    for warning in warnings:
        print(f"install-tools: WARNING: {warning}", file=sys.stderr)
    if not errors:
        print(f"install-tools: the tests run {summary(installed)} (from {args.tools})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
