"""The at-most-once promise under a real crash: kill -9 the sending process mid-send, run again,
and count what a local SES endpoint received."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Buzz
from tests.helpers import ses_environment
from tests.ses_standin import SesStandIn

SUBSCRIBERS = 300


def test_killed_send_resumes_and_nobody_gets_two(buzz: Buzz, demo: Path) -> None:
    """After kill -9 mid-send and a second `buzz send`, every subscriber received exactly one
    message, except those reported in doubt (at most one each, at most one per sender thread)."""
    config = demo / "buzz.toml"
    config.write_text(config.read_text().replace('transport = "outbox"', 'transport = "ses"'))
    lines = ["email,language,consent_source,consent_at"] + [
        f"s{n:03d}@example.com,en,form,2026-01-01" for n in range(SUBSCRIBERS)
    ]
    (demo / "many.csv").write_text("\n".join(lines) + "\n")
    with SesStandIn(max_send_rate=60, latency_s=0.02) as ses:
        env = ses_environment(ses.url)
        assert buzz("subscribers", "import", "many.csv", env=env).returncode == 0
        assert buzz("fetch", env=env).returncode == 0
        assert buzz("build", env=env).returncode == 0
        sender = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "send", "--yes", "--lang", "en"],
            cwd=demo,
            env={k: v for k, v in os.environ.items() if not k.startswith("BUZZ_")} | env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(ses.messages) < 80 and time.monotonic() < deadline:
            time.sleep(0.01)
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        killed_at = len(ses.messages)
        assert 80 <= killed_at < SUBSCRIBERS

        after_crash = json.loads(buzz("status", "--json", env=env).stdout)["editions"][0]
        en = after_crash["languages"]["en"]
        assert after_crash["state"] == "sending"
        assert en["sending"] == 0  # nobody holds the lock: in-flight rows are in doubt
        assert en["in_doubt"] <= 16
        assert en["sent"] + en["in_doubt"] >= killed_at - 16

        resumed = buzz("send", "--yes", "--lang", "en", env=env)
        assert resumed.returncode == 0, resumed.stderr
        final = json.loads(buzz("status", "--json", env=env).stdout)["editions"][0]
        counts = final["languages"]["en"]
        in_doubt = counts["in_doubt"]
        assert counts["pending"] == 0
        assert counts["sent"] + in_doubt == SUBSCRIBERS
        received = [ses.sent_to(f"s{n:03d}@example.com") for n in range(SUBSCRIBERS)]
        assert max(received) == 1, "nobody receives the newsletter twice"
        assert received.count(0) <= in_doubt
        assert received.count(1) >= SUBSCRIBERS - in_doubt
