"""Helpers shared by the tests: paths and a Post factory for the pure stages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipeline.models import Post

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def make_post(
    guid: str,
    lang: str = "en",
    title: str = "A post",
    *,
    summary: str = "",
    published: datetime | None = None,
    categories: tuple[str, ...] = (),
    image: str | None = None,
    author: str = "",
    content_html: str = "",
) -> Post:
    """A Post with sensible defaults, for tests of the pure stages."""
    return Post(
        guid=guid,
        lang=lang,
        url=f"https://blog.example.com/{lang}/{guid}/",
        title=title,
        summary=summary or title,
        published=published or datetime(2026, 11, 20, 14, 0, tzinfo=UTC),
        content_html=content_html,
        image=image,
        categories=categories,
        author=author,
    )
