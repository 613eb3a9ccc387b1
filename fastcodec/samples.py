"""Sample images bundled with the package (see fastcodec/data/samples/README.md for sources)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_paths() -> list[Path]:
    """Paths of the bundled sample images (PNG), sorted by name."""
    folder = resources.files("fastcodec") / "data" / "samples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".png"))
