"""Write the dashboards' JSON into grafana/dashboards/ and their panel list into grafana/README.md.

python -m grafana.generate                 # regenerate (make dashboards)
python -m grafana.generate --check         # exit 1, naming the stale files, if the
                                           # committed files differ from what this produces
python -m grafana.generate --out DIR       # write (or --check) the JSON in DIR instead
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from grafana.dashboards_src import DASHBOARDS
from grafana.frame import finalize

HERE = Path(__file__).resolve().parent
DASHBOARDS_DIR = HERE / "dashboards"
README = HERE / "README.md"
README_BEGIN = "<!-- BEGIN GENERATED: dashboards and panels (python -m grafana.generate) -->"
README_END = "<!-- END GENERATED -->"


def filename(module: ModuleType) -> str:
    """The file of a dashboard is named after its fixed uid (the compose file's home dashboard
    path names celery-overview.json)."""
    return f"{module.UID}.json"


def render_dashboard(module: ModuleType) -> str:
    model = finalize(module.build().build())
    # sort_keys + a final newline: byte-stable output, so --check compares text.
    return JSONEncoder(sort_keys=True, indent=2).encode(model) + "\n"


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {filename(module): render_dashboard(module) for module in DASHBOARDS}


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_readme_section(rendered: dict[str, str]) -> str:
    """Markdown listing each dashboard and each panel with the question it answers."""
    lines = [README_BEGIN, ""]
    for module in DASHBOARDS:
        model = json.loads(rendered[filename(module)])
        lines += [
            f"### {model['title']}",
            "",
            f"uid `{model['uid']}`, file `dashboards/{filename(module)}`, variables: "
            + ", ".join(f"`${v['name']}`" for v in model["templating"]["list"])
            + ".",
            "",
            _cell(model["description"]),
            "",
            "| Row | Panel | Question it answers |",
            "| --- | --- | --- |",
        ]
        row = ""
        for panel in model["panels"]:
            if panel["type"] == "row":
                row = panel["title"]
                continue
            lines.append(f"| {_cell(row)} | {_cell(panel['title'])} | {_cell(panel.get('description', ''))} |")
        lines.append("")
    lines.append(README_END)
    return "\n".join(lines)


def readme_with_section(current: str, section: str) -> str:
    """Replace the generated section of the README, keeping the hand-written text around it."""
    try:
        head, rest = current.split(README_BEGIN, 1)
        _, tail = rest.split(README_END, 1)
    except ValueError:
        raise SystemExit(f"{README} lacks the markers {README_BEGIN!r} ... {README_END!r}") from None
    return head + section + tail


def expected_files(out_dir: Path, with_readme: bool) -> dict[Path, str]:
    rendered = render_all()
    files = {out_dir / name: text for name, text in rendered.items()}
    if with_readme:
        files[README] = readme_with_section(README.read_text(), render_readme_section(rendered))
    return files


def stale_files(expected: dict[Path, str], out_dir: Path) -> list[str]:
    """Files that differ from the generator's output, are missing, or are not produced by it."""
    problems = []
    for path, text in expected.items():
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text() != text:
            problems.append(f"{path}: differs from the generated version")
    for path in sorted(out_dir.glob("*.json")):
        if path not in expected:
            problems.append(f"{path}: not produced by the generator")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 if stale")
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR, help="folder of the dashboard JSON")
    parser.add_argument("--no-readme", action="store_true", help="leave grafana/README.md alone")
    args = parser.parse_args(argv)
    out_dir: Path = args.out
    expected = expected_files(out_dir, with_readme=not args.no_readme)

    if args.check:
        problems = stale_files(expected, out_dir)
        if problems:
            print("Stale generated Grafana files (run `make dashboards` and commit the result):", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        print(f"{len(expected)} generated Grafana files are up to date")
        return 0

    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(out_dir.glob("*.json")):
        if path not in expected:  # a dashboard removed from the code
            path.unlink()
            print(f"removed {path}")
    for path, text in expected.items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
