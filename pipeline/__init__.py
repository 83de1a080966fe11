"""buzz: the IT Buzz newsletter pipeline (feeds → pairs → related → MJML → SES)."""

from __future__ import annotations

__version__ = "0.1.0"
