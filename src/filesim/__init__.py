"""filesim: simulated NAS servers kept in sync with a Windows folder."""

from pathlib import Path

__version__ = "0.1.0"

#: The checkout filesim runs from (schemas/, values/ and images/ live there).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
