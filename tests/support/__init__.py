"""Test support shared by every wing's tests: paths, store URLs, server launchers, an in-process
checkout client, small scenarios, and deliberately wrong servers (never part of the project's
code paths; the reference server stays correct)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
