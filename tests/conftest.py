"""Shared fixtures: a copy of the demo in a temporary folder, and a way to run `buzz`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click.testing
import pytest

from pipeline import config
from pipeline.cli import cli as buzz_cli
from tests.helpers import ROOT

Buzz = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The demo configuration and its feeds, copied so that var/ lands in a temporary folder."""
    shutil.copy(ROOT / "buzz.toml", tmp_path / "buzz.toml")
    shutil.copytree(ROOT / "demo", tmp_path / "demo")
    return tmp_path


@pytest.fixture
def buzz(demo: Path) -> Buzz:
    """Run the real `buzz` command (`python -m pipeline`) in the demo folder."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("BUZZ_")}
        environment |= env or {}
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            cwd=demo,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


@pytest.fixture
def settings(demo: Path) -> config.Settings:
    """The demo's settings."""
    return config.load(demo / "buzz.toml")


@pytest.fixture(scope="session")
def moto_ses() -> Iterator[str]:
    """A real moto server (SES over HTTP) on 127.0.0.1; yields its base URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def ses_env(moto_ses: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the standard AWS chain at the moto server, with a clean SES state."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_ses}/moto-api/reset", method="POST"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", moto_ses)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_ses


Cli = Callable[..., click.testing.Result]


@pytest.fixture
def cli(demo: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run `buzz` in process (click's CliRunner) in the demo folder: fast, and its log events
    can be captured with `structlog.testing.capture_logs`. Exceptions are not swallowed."""
    monkeypatch.chdir(demo)
    for name in [name for name in os.environ if name.startswith("BUZZ_")]:
        monkeypatch.delenv(name)
    runner = click.testing.CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> click.testing.Result:
        return runner.invoke(buzz_cli, list(args), env=env, catch_exceptions=False)

    return run
