"""Test support: deliberately wrong servers and small drivers (never part of the project's
code paths; the reference server stays correct)."""
