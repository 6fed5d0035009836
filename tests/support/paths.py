"""Where the repository's sample data and the real imagery the tests read are."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TILES = REPO_ROOT / "sample_tiles"
REALDATA = REPO_ROOT / "tests" / "data" / "real"  # sources and licences in its README
