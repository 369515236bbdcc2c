"""Where the dashboard's files are: our static dir, and uPlot from the npm install."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
# uPlot is pinned in package.json; `make setup` installs it under node_modules. A copy in
# static/vendor (for an installed package without the source tree) takes precedence.
UPLOT_DIRS = (
    STATIC_DIR / "vendor" / "uplot",
    Path(__file__).resolve().parent.parent / "node_modules" / "uplot" / "dist",
)


def uplot_dir() -> Path | None:
    for path in UPLOT_DIRS:
        if (path / "uPlot.iife.min.js").is_file():
            return path
    return None
