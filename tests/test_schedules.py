"""The schedule definitions in schedules/: crontab and its wrapper, systemd units, Kubernetes."""

from __future__ import annotations

import configparser
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from croniter import croniter

from pipeline import config

ROOT = Path(__file__).resolve().parent.parent
SCHEDULES = ROOT / "schedules"
TORONTO = ZoneInfo("America/Toronto")
BUZZ_RUN = ["run", "--config", "/etc/buzz/buzz.toml", "--log-format", "json", "--yes"]
STATE_DIR = Path("/srv/buzz/var")
ENV_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY")


# -- helpers ---------------------------------------------------------------------------------


def fire_times(expression: str, zone: str, count: int) -> list[datetime]:
    """The next `count` fire times of a 5-field cron expression after 2026-11-26 00:00 local."""
    tz = ZoneInfo(zone)
    it = croniter(expression, datetime(2026, 11, 26, tzinfo=tz))
    return [it.get_next(datetime).astimezone(tz) for _ in range(count)]


def assert_tuesdays_at_ten(expression: str, zone: str) -> None:
    """Assert the expression fires on Tuesdays at 10:00 wall-clock time, across DST changes."""
    times = fire_times(expression, zone, 60)
    assert times[:2] == [
        datetime(2026, 12, 1, 10, 0, tzinfo=TORONTO),
        datetime(2026, 12, 8, 10, 0, tzinfo=TORONTO),
    ]
    assert all(t.weekday() == 1 and (t.hour, t.minute) == (10, 0) for t in times)
    assert all(b - a in (timedelta(days=7), timedelta(days=7, hours=1)) for a, b in pairwise(times))
    assert {t.utcoffset() for t in times} == {timedelta(hours=-5), timedelta(hours=-4)}


def crontab() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The crontab's environment settings and its jobs (5 schedule fields, command)."""
    env: dict[str, str] = {}
    jobs: list[tuple[str, str]] = []
    for number, raw in enumerate((SCHEDULES / "crontab").read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if setting := ENV_LINE.fullmatch(line):
            env[setting[1]] = setting[2].strip().strip("\"'")
            continue
        parts = line.split(None, 5)
        assert len(parts) == 6, f"crontab:{number}: neither a setting nor a job: {line}"
        fields, command = " ".join(parts[:5]), parts[5]
        assert croniter.is_valid(fields), f"crontab:{number}: bad schedule {fields!r}"
        jobs.append((fields, command))
    return env, jobs


def crontab_job(*, retry: bool) -> tuple[str, str]:
    """The crontab's weekly job (retry=False) or its same-day retry job (retry=True)."""
    _, jobs = crontab()
    found = [job for job in jobs if ("--retry" in shlex.split(job[1])) == retry]
    assert len(found) == 1, jobs
    return found[0]


class _MultiDict(dict[str, Any]):
    """Keeps every value of a repeated key, as systemd does, instead of the last one only."""

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


class _UnitParser(configparser.ConfigParser):
    """configparser for systemd units: case-sensitive keys, no interpolation, repeats kept."""

    def __init__(self) -> None:
        super().__init__(strict=False, interpolation=None, dict_type=_MultiDict)

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def unit(name: str) -> _UnitParser:
    """A systemd unit of schedules/systemd/, parsed."""
    parser = _UnitParser()
    parser.read(SCHEDULES / "systemd" / name, encoding="utf-8")
    return parser


def values(parser: _UnitParser, section: str, key: str) -> list[str]:
    """Every value of a (possibly repeated) key; [] when absent."""
    return parser.get(section, key, fallback="").splitlines()


def seconds(span: str) -> float:
    """A systemd time span such as `1h`, `12h`, `30min 5s` or `3600`, in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hr": 3600, "d": 86400}
    parts = re.findall(r"(\d+)\s*([a-z]*)", span)
    assert parts, span
    return sum(int(n) * units[u] for n, u in parts)


def kubernetes() -> dict[str, dict[str, Any]]:
    """The documents of kubernetes/cronjob.yaml by kind (each kind once)."""
    text = (SCHEDULES / "kubernetes" / "cronjob.yaml").read_text()
    docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    kinds = [doc["kind"] for doc in docs]
    assert len(kinds) == len(set(kinds)), kinds
    return {doc["kind"]: doc for doc in docs}


def pod_spec() -> dict[str, Any]:
    """The CronJob's pod spec."""
    spec: dict[str, Any] = kubernetes()["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]
    return spec["spec"]  # type: ignore[no-any-return]


def container() -> dict[str, Any]:
    """The CronJob's one container."""
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def example_settings(tmp_path: Path) -> config.Settings:
    """schedules/buzz.toml.example, validated by buzz itself, as if installed elsewhere."""
    installed = tmp_path / "etc" / "buzz.toml"
    installed.parent.mkdir()
    shutil.copy(SCHEDULES / "buzz.toml.example", installed)
    return config.load(installed)


def assert_writes_only_under(settings: config.Settings, directory: Path) -> None:
    """The state store, its lock and the output folder are all under `directory`."""
    lock = settings.state_path.with_name(settings.state_path.name + ".lock")
    for path in (settings.state_path, lock, settings.output_dir):
        assert path.is_relative_to(directory), (path, directory)


def toronto_today() -> str:
    """Today's date in Toronto, as buzz-cron writes it."""
    return datetime.now(TORONTO).date().isoformat()


# -- crontab ---------------------------------------------------------------------------------


def test_crontab_lines_are_settings_or_valid_jobs() -> None:
    """Every non-comment crontab line is a NAME=value setting or 5 valid cron fields + command."""
    env, jobs = crontab()
    assert len(jobs) == 2
    for _, command in jobs:
        assert "%" not in command  # cron would turn it into a newline
    assert env["SHELL"] == "/bin/sh"
    assert env["BUZZ_ENV_FILE"] == "/etc/buzz/env"


def test_crontab_is_read_in_toronto_time() -> None:
    """CRON_TZ is America/Toronto, set before the first job."""
    lines = [line.strip() for line in (SCHEDULES / "crontab").read_text().splitlines()]
    active = [line for line in lines if line and not line.startswith("#")]
    tz_lines = [n for n, line in enumerate(active) if line.startswith("CRON_TZ")]
    first_job = next(n for n, line in enumerate(active) if line[0].isdigit())
    assert len(tz_lines) == 1
    assert tz_lines[0] < first_job
    assert crontab()[0]["CRON_TZ"] == "America/Toronto"


def test_crontab_weekly_job_fires_tuesdays_at_ten_toronto_time() -> None:
    """The weekly job fires on 2026-12-01 10:00 and 2026-12-08 10:00 Toronto, then weekly."""
    fields, _ = crontab_job(retry=False)
    assert_tuesdays_at_ten(fields, crontab()[0]["CRON_TZ"])


def test_crontab_weekly_job_runs_buzz_under_flock() -> None:
    """The weekly job runs `buzz run … --log-format json --yes` under `flock -n`, into var/."""
    _, command = crontab_job(retry=False)
    words = shlex.split(command)
    assert words[:3] == ["cd", "/srv/buzz", "&&"]
    assert words[3:5] == ["flock", "-n"]
    assert "buzz run" in command
    start = words.index(".venv/bin/buzz")
    assert words[start + 1 : start + 1 + len(BUZZ_RUN)] == BUZZ_RUN
    assert words[-2:] == [">>var/buzz.log", "2>&1"]


def test_crontab_retry_job_fires_hourly_on_tuesday_after_the_send() -> None:
    """The retry job fires on Tuesdays only, every hour from 11:00 to 18:00 Toronto time."""
    fields, _ = crontab_job(retry=True)
    times = fire_times(fields, crontab()[0]["CRON_TZ"], 16)
    assert all(t.weekday() == 1 and t.minute == 0 for t in times)
    assert sorted({t.hour for t in times}) == list(range(11, 19))
    assert times[0] == datetime(2026, 12, 1, 11, 0, tzinfo=TORONTO)


def test_crontab_retry_job_is_the_weekly_job_gated_by_buzz_cron() -> None:
    """The retry job is the weekly job with `buzz-cron --retry`, under the same lock file."""
    _, weekly = crontab_job(retry=False)
    _, retry = crontab_job(retry=True)
    assert retry == weekly.replace("schedules/buzz-cron ", "schedules/buzz-cron --retry ")


@pytest.fixture
def srv(tmp_path: Path) -> Path:
    """A stand-in for /srv/buzz: the demo's config and feeds, buzz-cron, the venv, var/."""
    venv = Path(sys.executable).parent.parent
    if not (venv / "bin" / "buzz").exists():
        pytest.skip("the `buzz` command is not installed beside this Python")
    srv = tmp_path / "srv"
    (srv / "schedules").mkdir(parents=True)
    (srv / "var").mkdir()
    shutil.copy(SCHEDULES / "buzz-cron", srv / "schedules" / "buzz-cron")
    shutil.copy(ROOT / "buzz.toml", srv / "buzz.toml")
    shutil.copytree(ROOT / "demo", srv / "demo")
    (srv / ".venv").symlink_to(venv)
    (tmp_path / "env").write_text("BUZZ_UNSUBSCRIBE_SECRET=test-only-not-a-secret\n")
    return srv


def run_crontab_job(srv: Path, *, retry: bool) -> subprocess.CompletedProcess[str]:
    """Run a crontab job's command as cron would, with /srv/buzz and /etc/buzz moved to srv."""
    if shutil.which("flock") is None:
        pytest.skip("flock (util-linux) is not installed")
    env, _ = crontab()
    _, command = crontab_job(retry=retry)
    command = command.replace("/srv/buzz", str(srv))
    command = command.replace("/etc/buzz/buzz.toml", str(srv / "buzz.toml"))
    env = env | {"BUZZ_ENV_FILE": str(srv.parent / "env"), "HOME": str(srv.parent)}
    return subprocess.run(
        [env["SHELL"], "-c", command], env=env, capture_output=True, text=True, timeout=120
    )


def log_events(srv: Path, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of one event in the crontab's log file."""
    found = []
    for line in (srv / "var" / "buzz.log").read_text().splitlines():
        if line.startswith("{") and (record := json.loads(line))["event"] == event:
            found.append(record)
    return found


def test_crontab_jobs_run_buzz_and_retry_only_after_75(srv: Path) -> None:
    """The crontab's own command lines run the real buzz, log JSON, and retry only after a 75."""
    weekly = run_crontab_job(srv, retry=False)
    assert weekly.returncode == 0, weekly.stderr
    assert (srv / "var" / "cron.status").read_text() == f"0 {toronto_today()}\n"
    assert [e["exit_code"] for e in log_events(srv, "run_finished")] == [0]

    log_size = (srv / "var" / "buzz.log").stat().st_size
    skipped = run_crontab_job(srv, retry=True)
    assert skipped.returncode == 0
    assert (srv / "var" / "buzz.log").stat().st_size == log_size

    (srv / "var" / "cron.status").write_text(f"75 {toronto_today()}\n")
    retried = run_crontab_job(srv, retry=True)
    assert retried.returncode == 0, retried.stderr
    assert [e["exit_code"] for e in log_events(srv, "run_finished")] == [0, 0]
    assert (srv / "var" / "cron.status").read_text() == f"0 {toronto_today()}\n"


def test_crontab_job_exits_75_at_once_while_the_lock_is_held(srv: Path) -> None:
    """While another job holds the crontab's flock, a job exits 75 and runs nothing."""
    with (srv / "var" / "cron.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        blocked = run_crontab_job(srv, retry=False)
    assert blocked.returncode == 75
    assert (srv / "var" / "buzz.log").read_text() == ""
    assert not (srv / "var" / "cron.status").exists()


# -- buzz-cron -------------------------------------------------------------------------------


def buzz_cron(tmp_path: Path, *args: str, env_file: Path | None = None) -> int:
    """Run schedules/buzz-cron in tmp_path with `args`; its exit code."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    if env_file is not None:
        env["BUZZ_ENV_FILE"] = str(env_file)
    result = subprocess.run(
        ["sh", str(SCHEDULES / "buzz-cron"), *args], cwd=tmp_path, env=env, timeout=30
    )
    return result.returncode


def fake_buzz(code: int) -> list[str]:
    """A command that notes it ran (in ./ran) and exits with `code`."""
    return ["sh", "-c", f'echo "$BUZZ_UNSUBSCRIBE_SECRET" >>ran; exit {code}']


def test_buzz_cron_records_the_exit_code_and_toronto_date(tmp_path: Path) -> None:
    """buzz-cron runs its command, exits with its code and writes `<code> <date>` to var/."""
    assert buzz_cron(tmp_path, *fake_buzz(75)) == 75
    assert (tmp_path / "ran").exists()
    assert (tmp_path / "var" / "cron.status").read_text() == f"75 {toronto_today()}\n"


@pytest.mark.parametrize(
    ("status", "runs"),
    [("75 {today}", True), ("0 {today}", False), ("1 {today}", False), ("75 2020-01-07", False)],
)
def test_buzz_cron_retry_runs_only_after_75_the_same_day(
    tmp_path: Path, status: str, runs: bool
) -> None:
    """`buzz-cron --retry` runs its command only when the last run exited 75 today."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "cron.status").write_text(status.format(today=toronto_today()) + "\n")
    code = buzz_cron(tmp_path, "--retry", *fake_buzz(0))
    assert code == 0
    assert (tmp_path / "ran").exists() == runs


def test_buzz_cron_retry_without_a_record_runs_nothing(tmp_path: Path) -> None:
    """`buzz-cron --retry` with no status file yet runs nothing and exits 0."""
    assert buzz_cron(tmp_path, "--retry", *fake_buzz(1)) == 0
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "var" / "cron.status").exists()


def test_buzz_cron_exports_the_environment_file(tmp_path: Path) -> None:
    """buzz-cron exports BUZZ_ENV_FILE's KEY=value lines to the command."""
    env_file = tmp_path / "env"
    env_file.write_text("BUZZ_UNSUBSCRIBE_SECRET=from-the-env-file\n")
    assert buzz_cron(tmp_path, *fake_buzz(0), env_file=env_file) == 0
    assert (tmp_path / "ran").read_text() == "from-the-env-file\n"


def test_buzz_cron_refuses_an_unreadable_environment_file(tmp_path: Path) -> None:
    """buzz-cron exits 2 and runs nothing when BUZZ_ENV_FILE cannot be read."""
    assert buzz_cron(tmp_path, *fake_buzz(0), env_file=tmp_path / "missing") == 2
    assert not (tmp_path / "ran").exists()


# -- systemd ---------------------------------------------------------------------------------


def test_service_is_a_oneshot_buzz_run_as_buzz() -> None:
    """buzz.service is a oneshot running `buzz run --log-format json --yes` as buzz in /srv/buzz."""
    service = unit("buzz.service")
    assert service.has_section("Unit")
    assert service.get("Service", "Type") == "oneshot"
    assert service.get("Service", "User") == "buzz"
    assert service.get("Service", "WorkingDirectory") == "/srv/buzz"
    (exec_start,) = values(service, "Service", "ExecStart")
    assert shlex.split(exec_start) == ["/srv/buzz/.venv/bin/buzz", *BUZZ_RUN]


def test_service_takes_secrets_from_the_environment_file_only() -> None:
    """Secrets and AWS settings come from EnvironmentFile=/etc/buzz/env, never inline."""
    service = unit("buzz.service")
    assert values(service, "Service", "EnvironmentFile") == ["/etc/buzz/env"]
    for assignment in values(service, "Service", "Environment"):
        for word in shlex.split(assignment):
            name = word.partition("=")[0]
            assert not name.startswith("AWS_"), word
            assert not any(secret in name for secret in SECRET_WORDS), word
    lines = (SCHEDULES / "systemd" / "buzz.service").read_text().splitlines()
    active = "\n".join(line for line in lines if not line.startswith(("#", ";")))
    assert not re.search(r"(BUZZ_UNSUBSCRIBE_SECRET|AWS_SECRET_ACCESS_KEY)=", active)


def test_service_retries_75_hourly_the_same_day_and_nothing_else() -> None:
    """75 is a failure retried hourly, within the day; 1, 2 and 3 are never retried."""
    service = unit("buzz.service")
    success = " ".join(values(service, "Service", "SuccessExitStatus")).split()
    assert "75" not in success
    assert service.get("Service", "Restart") == "on-failure"
    prevented = " ".join(values(service, "Service", "RestartPreventExitStatus")).split()
    assert {"1", "2", "3"} <= set(prevented)
    assert "75" not in prevented
    step = seconds(service.get("Service", "RestartSec"))
    assert step == 3600
    burst = int(service.get("Unit", "StartLimitBurst"))
    window = seconds(service.get("Unit", "StartLimitIntervalSec"))
    retries = burst - 1
    assert retries >= 1
    assert window >= retries * step  # the limit does stop the retries...
    assert 10 + retries * step / 3600 < 24  # ...before the day is over


def test_service_is_sandboxed_with_one_writable_folder() -> None:
    """The service has the hardening options and may write to /srv/buzz/var only."""
    service = unit("buzz.service")
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
    }
    for key, value in expected.items():
        assert service.get("Service", key) == value, key
    assert values(service, "Service", "ReadWritePaths") == [str(STATE_DIR)]


def test_service_can_write_where_the_example_config_keeps_state(tmp_path: Path) -> None:
    """buzz.toml.example validates, and its state, lock and outbox are under ReadWritePaths."""
    (writable,) = values(unit("buzz.service"), "Service", "ReadWritePaths")
    assert_writes_only_under(example_settings(tmp_path), Path(writable))


def test_timer_fires_tuesdays_at_ten_toronto_and_catches_up() -> None:
    """buzz.timer: OnCalendar Tuesday 10:00 America/Toronto, Persistent, wanted by timers.target."""
    timer = unit("buzz.timer")
    assert timer.has_section("Unit")
    assert values(timer, "Timer", "OnCalendar") == ["Tue *-*-* 10:00:00 America/Toronto"]
    assert timer.get("Timer", "Persistent") == "true"
    assert seconds(timer.get("Timer", "RandomizedDelaySec", fallback="0")) <= 300
    assert timer.get("Timer", "Unit", fallback="buzz.service") == "buzz.service"
    assert timer.get("Install", "WantedBy") == "timers.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_timer_calendar_is_accepted_by_systemd_analyze() -> None:
    """`systemd-analyze calendar` accepts the timer's OnCalendar and next elapses on a Tuesday."""
    (calendar,) = values(unit("buzz.timer"), "Timer", "OnCalendar")
    result = subprocess.run(
        ["systemd-analyze", "calendar", calendar], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"Next elapse: Tue ", result.stdout), result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong in either unit (buzz stood in by /bin/true)."""
    service = (SCHEDULES / "systemd" / "buzz.service").read_text()
    service = service.replace("ExecStart=/srv/buzz/.venv/bin/buzz ", "ExecStart=/bin/true ")
    (tmp_path / "buzz.service").write_text(service)
    shutil.copy(SCHEDULES / "systemd" / "buzz.timer", tmp_path / "buzz.timer")
    result = subprocess.run(
        ["systemd-analyze", "verify", "./buzz.service", "./buzz.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "buzz." not in output


# -- Kubernetes ------------------------------------------------------------------------------


def test_kubernetes_file_holds_a_cronjob_and_its_claim() -> None:
    """cronjob.yaml holds a batch/v1 CronJob and a ReadWriteOnce PersistentVolumeClaim."""
    docs = kubernetes()
    assert set(docs) == {"CronJob", "PersistentVolumeClaim"}
    assert docs["CronJob"]["apiVersion"] == "batch/v1"
    claim = docs["PersistentVolumeClaim"]
    assert claim["apiVersion"] == "v1"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]


def test_cronjob_fires_tuesdays_at_ten_toronto_time_one_at_a_time() -> None:
    """The CronJob: Tuesdays 10:00 America/Toronto, Forbid, history limits, deadline, backoff."""
    cronjob = kubernetes()["CronJob"]["spec"]
    assert cronjob["timeZone"] == "America/Toronto"
    assert_tuesdays_at_ten(cronjob["schedule"], cronjob["timeZone"])
    assert cronjob["concurrencyPolicy"] == "Forbid"
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit", "startingDeadlineSeconds"):
        assert isinstance(cronjob[key], int), key
        assert cronjob[key] > 0, key
    job = cronjob["jobTemplate"]["spec"]
    assert isinstance(job["backoffLimit"], int)


def test_cronjob_retries_75_only() -> None:
    """The Job fails at once on exit 1, 2 or 3 and retries other failures such as 75."""
    job = kubernetes()["CronJob"]["spec"]["jobTemplate"]["spec"]
    assert pod_spec()["restartPolicy"] == "Never"  # required by podFailurePolicy
    fail_job = [
        rule["onExitCodes"]
        for rule in job["podFailurePolicy"]["rules"]
        if rule["action"] == "FailJob" and "onExitCodes" in rule
    ]
    assert len(fail_job) == 1
    assert fail_job[0]["operator"] == "In"
    assert set(fail_job[0]["values"]) == {1, 2, 3}
    assert job["backoffLimit"] >= 1


def test_cronjob_container_runs_buzz_run_with_the_mounted_config() -> None:
    """The container runs `buzz run --config /config/buzz.toml --log-format json --yes`."""
    buzz = container()
    argv = [*buzz.get("command", []), *buzz.get("args", [])]
    assert argv == ["buzz", "run", "--config", "/config/buzz.toml", "--log-format", "json", "--yes"]
    assert buzz["image"] == "registry.example.com/buzz:1.0"
    mounts = {mount["name"]: mount for mount in buzz["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    (config_volume,) = [name for name, volume in volumes.items() if "configMap" in volume]
    assert mounts[config_volume]["mountPath"] == "/config"
    assert mounts[config_volume]["readOnly"] is True
    assert volumes[config_volume]["configMap"]["name"]


def test_cronjob_takes_the_secret_from_a_secret_and_aws_from_irsa() -> None:
    """BUZZ_UNSUBSCRIBE_SECRET comes from a secretKeyRef; no AWS key or literal secret in env."""
    env = {var["name"]: var for var in container()["env"]}
    secret = env["BUZZ_UNSUBSCRIBE_SECRET"]
    assert "value" not in secret
    assert secret["valueFrom"]["secretKeyRef"]["name"]
    assert secret["valueFrom"]["secretKeyRef"]["key"]
    assert "envFrom" not in container()
    for name, var in env.items():
        assert not any(word in name for word in SECRET_WORDS) or "value" not in var, name
        assert "AWS_SECRET" not in json.dumps(var), name
        assert not name.startswith(("AWS_ACCESS_KEY", "AWS_SECRET", "AWS_SESSION")), name
    assert pod_spec()["serviceAccountName"]
    text = (SCHEDULES / "kubernetes" / "cronjob.yaml").read_text()
    assert "eks.amazonaws.com/role-arn:" in text


def test_cronjob_mounts_the_claim_where_buzz_writes_its_state(tmp_path: Path) -> None:
    """The PVC is mounted read-write where buzz.toml.example keeps state, lock and outbox."""
    claim = kubernetes()["PersistentVolumeClaim"]["metadata"]["name"]
    volumes = [
        volume["name"]
        for volume in pod_spec()["volumes"]
        if volume.get("persistentVolumeClaim", {}).get("claimName") == claim
    ]
    assert len(volumes) == 1
    (mount,) = [mount for mount in container()["volumeMounts"] if mount["name"] == volumes[0]]
    assert not mount.get("readOnly", False)
    assert Path(mount["mountPath"]) == STATE_DIR
    assert_writes_only_under(example_settings(tmp_path), Path(mount["mountPath"]))


# -- README: AWS -----------------------------------------------------------------------------


def test_readme_eventbridge_schedule_is_tuesdays_at_ten_toronto_without_window() -> None:
    """The README's `aws scheduler create-schedule`: Tuesday 10:00 cron, Toronto, window OFF."""
    readme = (SCHEDULES / "README.md").read_text()
    block = readme[readme.index("aws scheduler create-schedule") :]
    block = block[: block.index("```")]
    expression = re.search(r"--schedule-expression '(cron\(([^)]*)\))'", block)
    assert expression, block
    minute, hour, day, month, weekday, year = expression[2].split()
    assert (day, year) == ("?", "*")
    weekdays = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
    assert_tuesdays_at_ten(f"{minute} {hour} * {month} {weekdays[weekday]}", "America/Toronto")
    assert "--schedule-expression-timezone America/Toronto" in block
    window = re.search(r"--flexible-time-window '([^']*)'", block)
    assert window, block
    assert json.loads(window[1]) == {"Mode": "OFF"}
    assert '"LaunchType": "FARGATE"' in block
