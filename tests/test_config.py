"""Tests for pipeline.config: the demo loads; every problem names file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import config
from pipeline.errors import ConfigError, ExitCode


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert caught.value.exit_code == ExitCode.USAGE
    return caught.value.problems


def test_demo_config_loads_with_paths_resolved_against_its_folder(demo: Path) -> None:
    """Relative state, output and feed paths resolve against the config file's folder."""
    settings = config.load(demo / "buzz.toml")
    assert settings.languages == ("en", "fr")
    assert settings.state_path == demo / "var" / "buzz.sqlite"
    assert settings.output_dir == demo / "var" / "out"
    assert settings.feed_locations("fr") == [str(demo / "demo" / "feeds" / "le-buzz-it-fr.xml")]
    assert settings.language_settings["fr"].from_ == "Le buzz IT <buzz@news.example.com>"


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    """A missing file is reported with its path."""
    assert _problems(tmp_path / "nope.toml") == [
        f"{tmp_path / 'nope.toml'}: file not found (use --config PATH or $BUZZ_CONFIG)"
    ]


def test_bad_toml_names_line_and_column(tmp_path: Path) -> None:
    """A syntax error names the file and where it is."""
    path = tmp_path / "bad.toml"
    path.write_text("[newsletter\nx = 1\n")
    [problem] = _problems(path)
    assert problem.startswith(f"{path}: invalid TOML:")
    assert "line 1" in problem


def test_every_problem_is_listed_with_its_key(demo: Path) -> None:
    """Unknown keys, wrong types, unknown languages and bad values are all reported at once."""
    path = demo / "buzz.toml"
    text = path.read_text()
    text = text.replace("max_stories = 8", 'max_stories = "8"\nmax_storys = 3')
    text = text.replace('languages = ["en", "fr"]', 'languages = ["en", "de"]')
    text = text.replace('timezone = "America/Toronto"', 'timezone = "Mars/Base"')
    text = text.replace('contact_url = "https://example.com/contact"', 'contact_url = "ftp://x"')
    path.write_text(text)
    problems = _problems(path)
    keys = [problem.split(": ")[1] for problem in problems]
    assert sorted(keys) == sorted(
        [
            "newsletter.languages",
            "newsletter.timezone",
            "edition.max_stories",
            "edition.max_storys",
            "sender.contact_url",
        ]
    )
    assert all(problem.startswith(f"{path}: ") for problem in problems)
    assert f"{path}: edition.max_storys: unknown key" in problems
    assert any("unknown language de" in problem for problem in problems)


def test_listed_language_needs_its_section(demo: Path) -> None:
    """A language listed in newsletter.languages without a [languages.X] section is named."""
    path = demo / "buzz.toml"
    text = path.read_text()
    start, end = text.index("[languages.fr]"), text.index("[feeds]")
    path.write_text(text[:start] + text[end:])
    assert _problems(path) == [
        f"{path}: languages.fr: required section is missing (newsletter.languages lists it)"
    ]


def test_unsubscribe_url_needs_token_placeholder(demo: Path) -> None:
    """The local audience's unsubscribe URL must carry {token}."""
    path = demo / "buzz.toml"
    path.write_text(path.read_text().replace("unsubscribe?token={token}", "unsubscribe"))
    [problem] = _problems(path)
    assert "audience.unsubscribe_url: must contain the placeholder {token}" in problem


def test_only_http_feeds_or_local_files(demo: Path) -> None:
    """A feed on another scheme is refused."""
    path = demo / "buzz.toml"
    path.write_text(path.read_text().replace('"demo/feeds/it-buzz-en.xml"', '"ftp://x/feed"'))
    [problem] = _problems(path)
    assert "languages.en.feeds" in problem
    assert "only http(s) URLs and local files" in problem


def test_aws_region_overrides_delivery_region(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_REGION from the environment wins over delivery.region."""
    settings = config.load(demo / "buzz.toml")
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert settings.region == "ca-central-1"
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert settings.region == "us-east-1"


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """--config wins over $BUZZ_CONFIG, which wins over buzz.toml."""
    monkeypatch.delenv("BUZZ_CONFIG", raising=False)
    assert config.config_path(None) == Path("buzz.toml")
    monkeypatch.setenv("BUZZ_CONFIG", "/etc/buzz.toml")
    assert config.config_path(None) == Path("/etc/buzz.toml")
    assert config.config_path("x.toml") == Path("x.toml")


def test_unknown_language_sections_topics_and_bad_values_are_reported(demo: Path) -> None:
    """A [languages.de] section, a bad topic, a two-line name and absurd numbers are errors."""
    path = demo / "buzz.toml"
    text = path.read_text()
    text = text.replace(
        "[feeds]", '[languages.de]\nname = "x"\nfeeds = ["a"]\nfrom = "a <a@b.cd>"\n\n[feeds]'
    )
    text = text.replace(
        'topics = { en = "it-buzz-en", fr = "it-buzz-fr" }', 'topics = { en = "it buzz" }'
    )
    text = text.replace('name = "IT Buzz"', 'name = "IT\\nBuzz"')
    text = text.replace("translation_grace_hours = 48", "translation_grace_hours = 1e300")
    text = text.replace(
        'unsubscribe_mailto = "unsubscribe@news.example.com"', 'unsubscribe_mailto = "x"'
    )
    path.write_text(text)
    problems = {problem.split(": ")[1]: problem for problem in _problems(path)}
    assert sorted(problems) == [
        "audience.topics.en",
        "audience.unsubscribe_mailto",
        "edition.translation_grace_hours",
        "languages.de",
        "languages.en.name",
    ]
    assert problems["languages.de"].endswith("unknown language (supported: en, fr)")


def test_a_feed_belongs_to_one_language(demo: Path) -> None:
    """The same feed listed under two languages is refused."""
    path = demo / "buzz.toml"
    path.write_text(
        path.read_text().replace('"demo/feeds/le-buzz-it-fr.xml"', '"demo/feeds/it-buzz-en.xml"')
    )
    [problem] = _problems(path)
    assert (
        "languages.fr.feeds: 'demo/feeds/it-buzz-en.xml' is already a feed of languages.en"
        in problem
    )


def test_subject_and_preheader_patterns_are_checked_with_every_other_problem(demo: Path) -> None:
    """A typo in a pattern is `file: key: problem`, reported together with the other errors."""
    path = demo / "buzz.toml"
    text = path.read_text()
    text = text.replace(
        'from = "IT Buzz <buzz@news.example.com>"',
        'from = "IT Buzz <buzz@news.example.com>"\nsubject = "{name}: {titel}"',
    )
    text = text.replace(
        'from = "Le buzz IT <buzz@news.example.com>"',
        'from = "Le buzz IT <buzz@news.example.com>"\npreheader = "{summary:>10} et {title"',
    )
    text = text.replace("max_stories = 8", "max_stories = 0")
    path.write_text(text)
    problems = _problems(path)
    assert (
        f"{path}: languages.en.subject: unknown placeholder {{titel}} (use {{name}}, {{title}})"
        in problems
    )
    [preheader] = [p for p in problems if p.startswith(f"{path}: languages.fr.preheader: ")]
    assert "{summary:>10}: no conversion or format spec is allowed" in preheader
    assert "unbalanced brace '{' at character 18" in preheader
    assert any(p.startswith(f"{path}: edition.max_stories: ") for p in problems)


def test_patterns_with_escaped_braces_load(demo: Path) -> None:
    """`{{` and `}}` are literal braces: such a pattern is valid."""
    path = demo / "buzz.toml"
    path.write_text(
        path.read_text().replace(
            'from = "IT Buzz <buzz@news.example.com>"',
            'from = "IT Buzz <buzz@news.example.com>"\nsubject = "{{beta}} {name}: {title}"',
        )
    )
    assert config.load(path).language_settings["en"].subject == "{{beta}} {name}: {title}"
