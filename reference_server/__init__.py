"""The reference checkout server: a FastAPI app speaking CONTRACT.md over pluggable stores.

Imports `campaign/` only; never `sim/` or `loadtests/`."""

CONTRACT_VERSION = "1.2"
