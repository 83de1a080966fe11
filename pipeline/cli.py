"""The `buzz` command: parse, build the objects, call the job, print, map errors to exit codes."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from pipeline import config, log
from pipeline.audience import read_csv, valid_address
from pipeline.errors import BuzzError, ConfigError, ExitCode, Outcome, UsageError
from pipeline.feeds import FeedReport, unavailable_languages
from pipeline.models import Edition, EditionState
from pipeline.pairing import describe
from pipeline.postindex import PostIndex
from pipeline.render import render_preview
from pipeline.run import Built, Ending, Job, Rehearsal, SendOutcome
from pipeline.screenshots import save as save_screenshots
from pipeline.store import Store
from pipeline.text import public_url
from pipeline.transport import redact


@dataclass(slots=True)
class Options:
    """The options every command accepts, and the job they open (once)."""

    config: str | None
    lang: str | None
    dry_run: bool
    yes: bool
    command: str = ""  # what the runs table and `run_finished` call this invocation
    opened: Job | None = None

    def job(self) -> Job:
        """Load the configuration and open the state store (with --dry-run, a private copy
        of it: see `Store`)."""
        if self.opened is not None:
            return self.opened
        settings = config.load(config.config_path(self.config))
        if self.lang and self.lang not in settings.languages:
            raise UsageError(
                f"--lang {self.lang}: not a configured language ({', '.join(settings.languages)})"
            )
        try:
            store = Store(settings.state_path, rehearsal=self.dry_run)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                [f"{settings.path}: newsletter.state: cannot open {settings.state_path}: {exc}"]
            ) from None
        self.opened = Job(settings, store)
        if sys.stderr.isatty():
            self.opened.progress = _progress_line
        return self.opened

    def close(self) -> None:
        """Close the state store, if it was opened (a dry run's copy goes with it)."""
        if self.opened is not None:
            self.opened.store.close()

    def languages(self, job: Job) -> tuple[str, ...]:
        """The languages this call is restricted to."""
        return (self.lang,) if self.lang else job.settings.languages


def _progress_line(lang: str, done: int, total: int, rate: float) -> None:
    """A one-line progress bar on the terminal: done/total, rate, time left."""
    left = (total - done) / rate if rate > 0 else 0
    bar = "#" * int(30 * done / total) if total else ""
    end = "\n" if done >= total else ""
    click.echo(
        f"\r  {lang}: [{bar:<30}] {done}/{total} · {rate:.0f}/s · "
        f"{int(left // 60)}:{int(left % 60):02d} left ",
        err=True,
        nl=False,
    )
    if end:
        click.echo("", err=True)


def _with_common_options(record: bool) -> Callable[[Callable[..., Any]], Callable[..., None]]:
    """Add the common options, run the command, print any error as one line, and exit with
    the command's code. A recorded command (one that changes state) returns an `Ending`;
    it ends with one `run_finished` event whatever stops it, and a row in the runs table
    when the store could be opened (not for a dry run, which changes nothing)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., None]:
        @click.option(
            "--config",
            "config_path",
            metavar="PATH",
            help="Configuration file (default: $BUZZ_CONFIG, else buzz.toml).",
        )
        @click.option(
            "--lang", type=click.Choice(config.SUPPORTED_LANGUAGES), help="Only this language."
        )
        @click.option(
            "--log-format",
            type=click.Choice(["json", "console"]),
            help="Log format on stderr (default: console on a terminal, JSON lines otherwise).",
        )
        @click.option(
            "--dry-run",
            is_flag=True,
            help="Change nothing: work on a private copy of the state store, build every file "
            "and message, write and send none.",
        )
        @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
        @functools.wraps(command)
        def wrapper(
            config_path: str | None,
            lang: str | None,
            log_format: Any,
            dry_run: bool,
            yes: bool,
            **kwargs: Any,
        ) -> None:
            run_id = log.configure(log_format)
            started_at, started = datetime.now(UTC), time.perf_counter()
            options = Options(config_path, lang, dry_run, yes, command=_command_name())
            try:
                ending = _ending(command, options, kwargs)
                if record:
                    _finish(options, run_id, started_at, started, ending)
            finally:
                options.close()
            raise click.exceptions.Exit(int(ending.exit_code))

        wrapper.recorded = record  # type: ignore[attr-defined]  # read by `main`
        return wrapper

    return decorate


common = _with_common_options(record=False)  # read-only commands: status, preview, explain, list
recorded = _with_common_options(record=True)  # commands that change state: each one is a run


def _command_name(context: click.Context | None = None) -> str:
    """The command as typed after `buzz`: "run", "subscribers import"…"""
    names, context = [], context or click.get_current_context()
    while context.parent is not None:
        names.append(context.info_name or "")
        context = context.parent
    return " ".join(reversed(names))


def _ending(command: Callable[..., Any], options: Options, kwargs: dict[str, Any]) -> Ending:
    """Run `command`; its ending, or the ending of what stopped it (printed as one line)."""
    try:
        result = command(options, **kwargs)
    except BuzzError as exc:
        for line in str(exc).splitlines():
            click.echo(f"buzz: {line}", err=True)
        return Ending.of(exc.outcome, error=redact(str(exc)))
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        return Ending.of(Outcome.ABORTED)
    except click.ClickException as exc:
        exc.show()
        return Ending.of(Outcome.USAGE_ERROR, error=redact(exc.format_message()))
    except Exception as exc:
        error = redact(f"{type(exc).__name__}: {exc}")
        log.log.exception("crashed", error=error)
        click.echo(f"buzz: unexpected error: {type(exc).__name__}: {exc}", err=True)
        return Ending.of(Outcome.CRASHED, error=error)
    if isinstance(result, Ending):
        return result.rehearsed() if options.dry_run else result
    return Ending(Outcome.DONE, {}, ExitCode(result))


def _finish(
    options: Options, run_id: str, started_at: datetime, started: float, ending: Ending
) -> None:
    """Record the run (when the store is open and it is not a dry run), then log
    `run_finished`: the last event of every run."""
    fields = {
        "command": options.command,
        "outcome": str(ending.outcome),
        "exit_code": int(ending.exit_code),
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        "dry_run": options.dry_run,
        **ending.counts,
    }
    job = options.opened
    if job is not None and not job.rehearsal:
        summary = {"duration_ms": fields["duration_ms"], **ending.counts}
        try:
            job.store.record_run(run_id, options.command, started_at, ending.outcome,
                                 ending.exit_code, summary)  # fmt: skip
        except sqlite3.Error as exc:
            log.log.warning("run_not_recorded", error=f"{type(exc).__name__}: {exc}")
    level = {ExitCode.OK: "info", ExitCode.SOME_FAILED: "warning", ExitCode.TEMPFAIL: "warning"}
    getattr(log.log, level.get(ending.exit_code, "error"))("run_finished", **fields)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="buzz")
def cli() -> None:
    """buzz turns the IT Buzz blog's English and French feeds into newsletters."""


def _path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# run ------------------------------------------------------------------------------------------


@cli.command()
@recorded
def run(options: Options) -> Ending:
    """The scheduled job: fetch, compose the next edition, render, send to every subscriber.

    With --dry-run, everything happens on a private copy of the state store: feeds are
    fetched and the edition built and rendered, every message is built; nothing is stored,
    written or sent."""
    job = options.job()
    with job.locked():
        result = job.run(options.languages(job))
    _print_feeds(result.feeds)
    for resumed in result.resumed:
        click.echo(f"Resumed the interrupted send of edition {resumed.edition_id}:")
        _print_send(job, resumed)
    if result.unavailable:
        click.echo(
            f"Every feed of {', '.join(result.unavailable)} failed: no new edition this run "
            "(it would lack those stories). buzz will try again at the next run."
        )
    elif result.built is None:
        click.echo("Nothing new to send.")
    else:
        _print_built(job, result.built)
    for edition_id, would_send in result.rehearsals.items():
        click.echo(f"Dry run of edition {edition_id}:")
        _print_rehearsal(would_send)
    if result.awaiting_approval and result.built:
        click.echo(f"Approval required: review it, then run 'buzz send {result.built.edition.id}'.")
    if result.sent is not None:
        _print_send(job, result.sent)
    _print_dry_run(job)
    return result.ending()


# fetch ----------------------------------------------------------------------------------------


@cli.command()
@recorded
@click.option(
    "--backfill",
    is_flag=True,
    help="Also seed the archive from older feed pages (WordPress ?paged=N); never sent.",
)
@click.option("--max-pages", default=50, show_default=True, help="Pages per feed for --backfill.")
def fetch(options: Options, backfill: bool, max_pages: int) -> Ending:
    """Fetch every feed, store new posts, print a summary per feed.

    With --dry-run, feeds (and older pages) are fetched and parsed but nothing is stored.
    Exits 75 when every feed of a language failed."""
    job = options.job()
    with job.locked():
        reports = job.fetch()
        backfilled = job.backfill(max_pages) if backfill else []
    _print_feeds(reports)
    for b in backfilled:
        click.echo(
            f"  [{b.lang}] {public_url(b.url)}: backfill read {b.pages} page(s), "
            f"{b.added} post(s) archived; stopped: {b.stopped}"
        )
    _print_dry_run(job)
    unavailable = unavailable_languages(reports, options.languages(job))
    return Ending.of(
        Outcome.FEEDS_UNAVAILABLE if unavailable else Outcome.DONE,
        feeds=len(reports),
        feeds_failed=sum(r.status == "error" for r in reports),
        new_posts=sum(r.new for r in reports),
        backfilled=sum(b.added for b in backfilled),
        languages_unavailable=unavailable,
    )


def _print_feeds(reports: list[FeedReport]) -> None:
    for r in reports:
        where = f"  [{r.lang}] {public_url(r.url)}"
        if r.status == "error":
            click.echo(f"{where}: FAILED — {r.error}")
        elif r.status == "not_modified":
            click.echo(f"{where}: not modified")
        else:
            warning = f" (warning: {r.warning})" if r.warning else ""
            click.echo(f"{where}: {len(r.posts)} entries, {r.new} new{warning}")


# build and preview ----------------------------------------------------------------------------


@cli.command()
@recorded
def build(options: Options) -> Ending:
    """Compose and render the next edition as a draft, without sending it.

    With --dry-run, the edition is composed and rendered (its files built) but neither
    stored nor written."""
    job = options.job()
    with job.locked():
        built = job.build()
    if built is None:
        click.echo("Nothing new: no edition to build. ('buzz fetch' gets new posts.)")
        return Ending.of(Outcome.NOTHING_NEW)
    _print_built(job, built)
    _print_dry_run(job)
    return Ending.of(Outcome.DONE, edition=built.edition.id, stories=len(built.edition.stories))


def _print_built(job: Job, built: Built) -> None:
    edition = built.edition
    per_lang = ", ".join(f"{lang} {len(edition.stories_in(lang))}" for lang in edition.languages)
    click.echo(f"Edition {edition.id}: {len(edition.stories)} stories ({per_lang})")
    where = "would be written to" if job.rehearsal else "previews:"
    click.echo(f"  {where} {_path(built.folder)}/  (edition.json, <lang>.html, <lang>.txt, "
               "<lang>.eml)")  # fmt: skip


def _print_dry_run(job: Job) -> None:
    if job.rehearsal:
        click.echo("Dry run: nothing was stored, written or sent.")


@cli.command()
@common
@click.argument("edition_id", required=False, metavar="[EDITION]")
@click.option("--serve", is_flag=True, help="Serve the preview on http://127.0.0.1:PORT/.")
@click.option("--port", default=8025, show_default=True, help="Port for --serve.")
@click.option(
    "--screenshots",
    is_flag=True,
    help="Save <lang>-375.png, <lang>-600.png and their -dark twins (Chromium).",
)
def preview(
    options: Options, edition_id: str | None, serve: bool, port: int, screenshots: bool
) -> int:
    """Show where the rendered edition is, and optionally serve it to a browser.

    With --dry-run, preview.html is built and not written (and --screenshots is refused)."""
    job = options.job()
    _, edition = job.load(edition_id) if edition_id else _newest(job)
    folder = job.edition_folder(edition.id)
    if not folder.is_dir():
        raise UsageError(f"edition {edition.id} has no folder at {folder}; run 'buzz build'")
    if screenshots and job.rehearsal:
        raise UsageError("--screenshots writes into the edition folder: not with --dry-run")
    rendered = job.render_all(edition)
    job.write_files(folder, {"preview.html": render_preview(edition.id, rendered).encode()})
    if screenshots:
        pictures = save_screenshots(folder, tuple(rendered))
        click.echo(f"{len(pictures)} screenshot(s) saved.")
    click.echo(f"Edition {edition.id} ({_path(folder)}):")
    for file in sorted(f for f in folder.iterdir() if not f.name.startswith(".")):
        click.echo(f"  {_path(file)}")
    _print_dry_run(job)
    if serve:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
            click.echo(f"Serving http://127.0.0.1:{port}/preview.html — Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
    return ExitCode.OK


def _newest(job: Job) -> tuple[EditionState, Edition]:
    editions = job.store.editions()
    if not editions:
        raise UsageError("no edition yet; run 'buzz build'")
    found = job.store.edition(editions[0][0])
    assert found is not None
    return found


# send -----------------------------------------------------------------------------------------


@cli.command()
@recorded
@click.argument("args", nargs=-1, metavar="[EDITION] [ADDR]...")
@click.option(
    "--test",
    "test_to",
    multiple=True,
    metavar="ADDR",
    help="Proof send of every language to these addresses only (no ledger).",
)
@click.option(
    "--resend-in-doubt",
    is_flag=True,
    help="Also resend messages whose earlier attempt may or may not have gone out.",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Send again to recipients that failed permanently (once the cause is fixed).",
)
def send(
    options: Options,
    args: tuple[str, ...],
    test_to: tuple[str, ...],
    resend_in_doubt: bool,
    retry_failed: bool,
) -> Ending:
    """Send a built edition to its audience (resumes an interrupted send), or a proof.

    With --dry-run, every message (proofs too) is built and none is sent; the ledger and
    the edition's state are untouched, and the send's duration is predicted."""
    edition_ids = [arg for arg in args if "@" not in arg]
    addresses = [*test_to, *(arg for arg in args if "@" in arg)] if test_to else []
    if test_to:
        options.command = "proof"
    if len(edition_ids) > 1 or (not test_to and len(edition_ids) != len(args)):
        raise UsageError("usage: buzz send [EDITION] [--test ADDR...]")
    try:
        addresses = [valid_address(address) for address in addresses]
    except ValueError as exc:
        raise UsageError(f"--test: {exc}") from None
    job = options.job()
    langs = options.languages(job)
    if addresses:
        _, edition = job.load_to_send(edition_ids[0] if edition_ids else None)
        ids = job.proof(edition, addresses, langs)
        done = "built, none sent (dry run)" if job.rehearsal else "sent"
        to = ", ".join(addresses)
        click.echo(f"Proof of {edition.id} {done}: {len(ids)} message(s) to {to}.")
        return Ending.of(Outcome.DONE, edition=edition.id, messages=len(ids))
    with job.locked():
        state, edition = job.load_to_send(edition_ids[0] if edition_ids else None)
        if job.rehearsal:
            rehearsal = job.rehearse(edition, langs)
            _print_rehearsal(rehearsal)
            return Ending.of(Outcome.SENT, edition=edition.id, would_send=rehearsal.would_send)
        if retry_failed:
            again = job.store.retry_failed(edition.id, langs)
            click.echo(f"{again} failed recipient(s) will be tried again.")
        elif state in (EditionState.SENT, EditionState.PARTIAL) and not resend_in_doubt:
            click.echo(f"Edition {edition.id} is already {state}; nothing to send.")
            return Ending.of(Outcome.NOTHING_NEW, edition=edition.id)
        _confirm(job, edition, options.yes)
        outcome = job.send(edition, langs, resend_in_doubt=resend_in_doubt)
        _print_send(job, outcome)
        return Ending.of(
            Outcome.PARTIAL if outcome.failed else Outcome.SENT,
            edition=edition.id,
            deliveries={r.lang: r.counts for r in outcome.reports},
        )


def _confirm(job: Job, edition: Edition, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("sending to the audience without a terminal needs --yes")
    audience = job.audience()
    sizes = ", ".join(
        f"{lang} {sum(1 for _ in audience.recipients(lang))}" for lang in edition.languages
    )
    click.confirm(f"Send edition {edition.id} to its audience ({sizes})?", abort=True)


def _print_rehearsal(rehearsal: Rehearsal) -> None:
    for lang, count in rehearsal.would_send.items():
        click.echo(f"  {lang}: dry run — {count} message(s) built, none sent")
    total = sum(rehearsal.would_send.values())
    if rehearsal.quota_left is not None and total > rehearsal.quota_left:
        click.echo(
            f"  the account's daily quota allows {rehearsal.quota_left} more: the send would "
            "stop there (exit 75) and the next run would resume"
        )
    if rehearsal.seconds is not None:
        minutes, seconds = divmod(int(rehearsal.seconds + 0.5), 60)
        click.echo(f"  at {rehearsal.rate:.1f} messages/s, about {minutes}:{seconds:02d}")


def _print_send(job: Job, outcome: SendOutcome) -> None:
    for report in outcome.reports:
        c = report.counts
        click.echo(
            f"  {report.lang}: {sum(c.values())} recipients, {c.get('sent', 0)} sent, "
            f"{c.get('failed', 0)} failed, {c.get('in_doubt', 0)} in doubt, "
            f"{c.get('skipped', 0)} skipped, {c.get('pending', 0)} pending"
        )
    if job.settings.delivery.transport == "outbox":
        click.echo(f"  emails: {_path(job.settings.output_dir / 'outbox' / outcome.edition_id)}/")


# status ---------------------------------------------------------------------------------------


@cli.command()
@common
@click.argument("edition_id", required=False, metavar="[EDITION]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(options: Options, edition_id: str | None, as_json: bool) -> int:
    """The last run of each command; per edition and language: recipients, sent, failed, in
    doubt, skipped, pending; each feed's health. --json adds the last ten runs."""
    job = options.job()
    editions = job.status(edition_id)
    last_runs = job.store.runs(latest_of_each_command=True)
    if as_json:
        feeds = [
            asdict(f) | {"url": public_url(f.url), "ok": f.ok} for f in job.store.feed_states()
        ]
        doc = {
            "editions": [asdict(e) for e in editions],
            "feeds": feeds,
            "runs": job.store.runs(),
            "last_runs": {run["command"]: run for run in last_runs},
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return ExitCode.OK
    if last_runs:
        click.echo("Last runs:")
    for last in last_runs:
        click.echo(f"  {last['command']}: {last['finished_at']} — {last['outcome']} "
                   f"(exit {last['exit_code']})")  # fmt: skip
    if not editions:
        click.echo("No edition yet.")
    for entry in editions:
        click.echo(f"Edition {entry.id}: {entry.state}")
        for lang, c in entry.languages.items():
            counts = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in c.items())
            click.echo(f"  {lang}: {counts}")
    click.echo("Feeds:")
    for f in job.store.feed_states():
        health = "ok" if f.ok else f"FAILING x{f.consecutive_failures}: {f.last_error}"
        click.echo(f"  [{f.lang}] {public_url(f.url)}: {health}")
    return ExitCode.OK


# pairing and related ----------------------------------------------------------------------


@cli.command("pair")
@recorded
@click.argument("first")
@click.argument("second")
def pair_(options: Options, first: str, second: str) -> Ending:
    """Make FIRST and SECOND (guids or URLs) a translation pair, whatever the evidence.

    Takes effect at the next 'buzz build' (which rebuilds the draft) or 'buzz run'."""
    return _decide(options, first, second, "force")


@cli.command()
@recorded
@click.argument("first")
@click.argument("second")
def unpair(options: Options, first: str, second: str) -> Ending:
    """Never pair FIRST and SECOND (guids or URLs), whatever the evidence."""
    return _decide(options, first, second, "break")


def _decide(options: Options, first: str, second: str, kind: str) -> Ending:
    job = options.job()
    with job.locked():
        a, b = job.find_post(first), job.find_post(second)
        if a.lang == b.lang:
            raise UsageError(f"both posts are in {a.lang}: a translation pair needs two languages")
        PostIndex(job.store).decide(a, b, kind, job.clock())
    verb = "are now a pair" if kind == "force" else "will never be paired"
    click.echo(f"{'Dry run: ' if job.rehearsal else ''}«{a.title}» and «{b.title}» {verb}.")
    return Ending.of(Outcome.DONE, kind=kind, posts=[a.guid, b.guid])


@cli.command()
@common
@click.argument("edition_id", required=False, metavar="[EDITION]")
def explain(options: Options, edition_id: str | None) -> int:
    """Show why each story's posts were paired and each related post chosen (default: the
    newest edition)."""
    job = options.job()
    _, edition = job.load(edition_id) if edition_id else _newest(job)
    click.echo(f"Edition {edition.id}")
    for number, story in enumerate(edition.stories, start=1):
        shown = [lang for lang in options.languages(job) if lang in story.posts]
        for lang in shown:
            click.echo(f"{number}. [{lang}] {story.posts[lang].title}")
            if story.pair is not None and lang == shown[0]:
                click.echo("\n".join(f"   {line}" for line in describe(story.pair)))
            picks = story.related.get(lang, ())
            if not picks:
                click.echo("     no related post scored high enough")
            for related in picks:
                click.echo(f"   - {related.post.title}  (score {related.score:.3f})")
                for reason in related.reasons:
                    click.echo(f"       {reason}")
    return ExitCode.OK


# subscribers ----------------------------------------------------------------------------------


@cli.group()
def subscribers() -> None:
    """Import, list and unsubscribe subscribers of the local audience."""


@subscribers.command("import")
@recorded
@click.argument("csv_file", type=click.Path(path_type=Path))
def import_(options: Options, csv_file: Path) -> Ending:
    """Import subscribers from a CSV (email,language,consent_source,consent_at[,name,…])."""
    job = options.job()
    result = read_csv(csv_file, job.settings.languages, job.settings.tz)
    added = job.audience().add(result.subscribers, job.clock())
    click.echo(
        f"{'Dry run: ' if job.rehearsal else ''}{len(result.subscribers)} valid line(s): "
        f"{added} new, {len(result.subscribers) - added} updated; {len(result.problems)} "
        f"rejected.{' Nothing imported.' if job.rehearsal else ''}"
    )
    click.echo(f"Read as {result.read_as}.")
    if result.extra_columns:
        click.echo(f"Extra columns kept as attributes: {', '.join(result.extra_columns)}")
    for problem in result.problems:
        click.echo(problem, err=True)
    return Ending.of(
        Outcome.INPUT_REJECTED if result.problems else Outcome.DONE,
        valid=len(result.subscribers),
        added=added,
        updated=len(result.subscribers) - added,
        rejected=len(result.problems),
    )


@subscribers.command("list")
@common
def list_(options: Options) -> int:
    """List subscribers (address, language, status, consent)."""
    job = options.job()
    for sub in job.audience().members(options.lang):
        state = f"unsubscribed {sub.unsubscribed_at}" if sub.unsubscribed_at else "subscribed"
        click.echo(f"{sub.email}\t{sub.lang}\t{state}\t{sub.consent_source} ({sub.consent_at})")
    return ExitCode.OK


@subscribers.command()
@recorded
@click.argument("address", required=False)
@click.option("--token", help="The token of an unsubscribe link (its signature is checked).")
def unsubscribe(options: Options, address: str | None, token: str | None) -> Ending:
    """Unsubscribe ADDRESS (or the address a link's --token names): never emailed again.

    The company's unsubscribe page can call `buzz subscribers unsubscribe --token TOKEN`."""
    job = options.job()
    if token:
        address = job.verify_token(token)
    if not address:
        raise UsageError("usage: buzz subscribers unsubscribe ADDRESS | --token TOKEN")
    if not job.audience().remove(address, job.clock()):
        raise UsageError(f"{address}: not a subscriber")
    click.echo(f"Dry run: {address} would be unsubscribed." if job.rehearsal
               else f"{address} is unsubscribed.")  # fmt: skip
    return Ending.of(Outcome.DONE, unsubscribed=1)


# entry point ----------------------------------------------------------------------------------


def main() -> None:
    """Run `buzz`; every failure becomes one line on stderr and a contract exit code.

    A command maps its own failures (see `_ending`); here remain the command line's own:
    an unknown option, a missing argument, Ctrl-C before a command starts."""
    started_at, started = datetime.now(UTC), time.perf_counter()
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = ExitCode.USAGE
    except click.ClickException as exc:
        exc.show()
        code = ExitCode.USAGE
        context = exc.ctx if isinstance(exc, click.UsageError) else None
        callback = context.command.callback if context is not None else None
        if context is not None and getattr(callback, "recorded", False):
            # a command line refused before its command ran still ends with `run_finished`,
            # so a monitor of the cron job sees the typo
            command = _command_name(context)
            ending = Ending.of(Outcome.USAGE_ERROR, error=redact(exc.format_message()))
            run_id = log.configure()
            _finish(Options(None, None, False, False, command), run_id, started_at, started, ending)
    sys.exit(int(code) if isinstance(code, int) else ExitCode.OK)
