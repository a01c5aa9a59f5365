"""Where the checkout's own folders are (the harness runs from a source checkout or an editable install)."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASELINES = REPO / 'baselines'
