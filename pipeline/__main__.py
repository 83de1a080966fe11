"""`python -m pipeline` runs the `buzz` command."""

from __future__ import annotations

from pipeline.cli import main

main()
