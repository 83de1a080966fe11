"""The `buzz` command: parse, build the objects, call the job, print, map errors to exit codes."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ParamSpec

import click
import structlog

from pipeline import config, log
from pipeline.audience import read_csv, valid_address
from pipeline.errors import BuzzError, ConfigError, ExitCode, UsageError
from pipeline.feeds import FeedReport, unavailable_languages
from pipeline.models import Edition, EditionState
from pipeline.postindex import PostIndex
from pipeline.render import render_preview
from pipeline.run import Job, Rehearsal, SendOutcome
from pipeline.screenshots import save as save_screenshots
from pipeline.store import Store, locked
from pipeline.text import public_url

P = ParamSpec("P")


@dataclass(slots=True)
class Options:
    """The options every command accepts."""

    config: str | None
    lang: str | None
    dry_run: bool
    yes: bool

    def job(self) -> Job:
        """Load the configuration and open the state store."""
        settings = config.load(config.config_path(self.config))
        if self.lang and self.lang not in settings.languages:
            raise UsageError(
                f"--lang {self.lang}: not a configured language ({', '.join(settings.languages)})"
            )
        try:
            store = Store(settings.state_path)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                [f"{settings.path}: newsletter.state: cannot open {settings.state_path}: {exc}"]
            ) from None
        job = Job(settings, store)
        if sys.stderr.isatty():
            job.progress = _progress_line
        return job

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


def common(command: Callable[P, int]) -> Callable[..., int]:
    """Add the common options and turn the command's result into an exit code."""

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
        help="Send nothing (messages are built, not handed over); fetch, build and "
        "subscribers store nothing.",
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
    ) -> int:
        log.configure(log_format)
        return command(Options(config_path, lang, dry_run, yes), **kwargs)  # type: ignore[arg-type]

    return wrapper


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
@common
def run(options: Options) -> int:
    """The scheduled job: fetch, compose the next edition, render, send to every subscriber.

    With --dry-run, feeds are fetched and the edition built, but no message is sent."""
    job = options.job()
    with locked(job.settings.state_path):
        result = job.run(options.languages(job), dry_run=options.dry_run)
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
        _print_built(result.built.edition, result.built.folder)
    for edition_id, would_send in result.rehearsals.items():
        click.echo(f"Dry run of edition {edition_id}:")
        _print_rehearsal(would_send)
    if result.awaiting_approval and result.built:
        click.echo(f"Approval required: review it, then run 'buzz send {result.built.edition.id}'.")
    if result.sent is not None:
        _print_send(job, result.sent)
    return result.exit_code


# fetch ----------------------------------------------------------------------------------------


@cli.command()
@common
@click.option(
    "--backfill",
    is_flag=True,
    help="Also seed the archive from older feed pages (WordPress ?paged=N); never sent.",
)
@click.option("--max-pages", default=50, show_default=True, help="Pages per feed for --backfill.")
def fetch(options: Options, backfill: bool, max_pages: int) -> int:
    """Fetch every feed, store new posts, print a summary per feed.

    With --dry-run, feeds are fetched and parsed but nothing is stored. Exits 75 when every
    feed of a language failed."""
    job = options.job()
    with locked(job.settings.state_path):
        reports = job.fetch(dry_run=options.dry_run)
        backfilled = job.backfill(max_pages) if backfill and not options.dry_run else []
    _print_feeds(reports)
    if options.dry_run:
        click.echo("Dry run: nothing stored.")
    for b in backfilled:
        click.echo(
            f"  [{b.lang}] {public_url(b.url)}: backfill read {b.pages} page(s), "
            f"{b.added} post(s) archived; stopped: {b.stopped}"
        )
    unavailable = unavailable_languages(reports, options.languages(job))
    return ExitCode.TEMPFAIL if unavailable else ExitCode.OK


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
@common
def build(options: Options) -> int:
    """Compose and render the next edition as a draft, without sending it.

    With --dry-run, the edition is composed and rendered but neither stored nor written."""
    job = options.job()
    with locked(job.settings.state_path):
        built = job.build(write=not options.dry_run)
    if built is None:
        click.echo("Nothing new: no edition to build. ('buzz fetch' gets new posts.)")
        return ExitCode.OK
    _print_built(built.edition, built.folder)
    if options.dry_run:
        click.echo("Dry run: nothing stored or written.")
    return ExitCode.OK


def _print_built(edition: Edition, folder: Path) -> None:
    per_lang = ", ".join(f"{lang} {len(edition.stories_in(lang))}" for lang in edition.languages)
    click.echo(f"Edition {edition.id}: {len(edition.stories)} stories ({per_lang})")
    click.echo(f"  previews: {_path(folder)}/  (edition.json, <lang>.html, <lang>.txt, <lang>.eml)")


@cli.command()
@common
@click.argument("edition_id", required=False, metavar="[EDITION]")
@click.option("--serve", is_flag=True, help="Serve the preview on http://127.0.0.1:PORT/.")
@click.option("--port", default=8025, show_default=True, help="Port for --serve.")
@click.option(
    "--screenshots", is_flag=True, help="Save <lang>-375.png and <lang>-600.png (Chromium)."
)
def preview(
    options: Options, edition_id: str | None, serve: bool, port: int, screenshots: bool
) -> int:
    """Show where the rendered edition is, and optionally serve it to a browser."""
    job = options.job()
    _, edition = job.load(edition_id) if edition_id else _newest(job)
    folder = job.edition_folder(edition.id)
    if not folder.is_dir():
        raise UsageError(f"edition {edition.id} has no folder at {folder}; run 'buzz build'")
    rendered = job.render_all(edition)
    (folder / "preview.html").write_text(render_preview(edition.id, rendered), encoding="utf-8")
    if screenshots:
        pictures = save_screenshots(folder, tuple(rendered))
        click.echo(f"{len(pictures)} screenshot(s) saved.")
    click.echo(f"Edition {edition.id} ({_path(folder)}):")
    for file in sorted(f for f in folder.iterdir() if not f.name.startswith(".")):
        click.echo(f"  {_path(file)}")
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
@common
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
) -> int:
    """Send a built edition to its audience (resumes an interrupted send), or a proof.

    With --dry-run, every message is built and none is sent; the ledger is untouched."""
    edition_ids = [arg for arg in args if "@" not in arg]
    addresses = [*test_to, *(arg for arg in args if "@" in arg)] if test_to else []
    if len(edition_ids) > 1 or (not test_to and len(edition_ids) != len(args)):
        raise UsageError("usage: buzz send [EDITION] [--test ADDR...]")
    try:
        addresses = [valid_address(address) for address in addresses]
    except ValueError as exc:
        raise UsageError(f"--test: {exc}") from None
    job = options.job()
    langs = options.languages(job)
    if addresses:
        _, edition = job.load(edition_ids[0] if edition_ids else None)
        ids = job.proof(edition, addresses, langs)
        click.echo(f"Proof of {edition.id} sent: {len(ids)} message(s) to {', '.join(addresses)}.")
        return ExitCode.OK
    with locked(job.settings.state_path):
        state, edition = job.load(edition_ids[0] if edition_ids else None)
        if options.dry_run:
            _print_rehearsal(job.rehearse(edition, langs))
            return ExitCode.OK
        if retry_failed:
            again = job.store.retry_failed(edition.id, langs)
            click.echo(f"{again} failed recipient(s) will be tried again.")
        elif state in (EditionState.SENT, EditionState.PARTIAL) and not resend_in_doubt:
            click.echo(f"Edition {edition.id} is already {state}; nothing to send.")
            return ExitCode.OK
        _confirm(job, edition, options.yes)
        outcome = job.send(edition, langs, resend_in_doubt=resend_in_doubt)
        _print_send(job, outcome)
        return ExitCode.SOME_FAILED if outcome.failed else ExitCode.OK


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
    """Per edition and language: recipients, sent, failed, in doubt, skipped, pending."""
    job = options.job()
    editions = job.status(edition_id)
    if as_json:
        feeds = [
            asdict(f) | {"url": public_url(f.url), "ok": f.ok} for f in job.store.feed_states()
        ]
        doc = {
            "editions": [asdict(e) for e in editions],
            "feeds": feeds,
            "runs": job.store.runs(),
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return ExitCode.OK
    runs = job.store.runs(1)
    if runs:
        last = runs[0]
        click.echo(
            f"Last run: {last['finished_at']} — {last['outcome']} (exit {last['exit_code']})"
        )
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
@common
@click.argument("first")
@click.argument("second")
def pair_(options: Options, first: str, second: str) -> int:
    """Make FIRST and SECOND (guids or URLs) a translation pair, whatever the evidence.

    Takes effect at the next 'buzz build' (which rebuilds the draft) or 'buzz run'."""
    return _decide(options, first, second, "force")


@cli.command()
@common
@click.argument("first")
@click.argument("second")
def unpair(options: Options, first: str, second: str) -> int:
    """Never pair FIRST and SECOND (guids or URLs), whatever the evidence."""
    return _decide(options, first, second, "break")


def _decide(options: Options, first: str, second: str, kind: str) -> int:
    job = options.job()
    with locked(job.settings.state_path):
        a, b = job.find_post(first), job.find_post(second)
        if a.lang == b.lang:
            raise UsageError(f"both posts are in {a.lang}: a translation pair needs two languages")
        if not options.dry_run:
            PostIndex(job.store).decide(a, b, kind, job.clock())
    verb = "are now a pair" if kind == "force" else "will never be paired"
    click.echo(f"{'Dry run: ' if options.dry_run else ''}«{a.title}» and «{b.title}» {verb}.")
    return ExitCode.OK


@cli.command()
@common
@click.argument("edition_id", required=False, metavar="[EDITION]")
def explain(options: Options, edition_id: str | None) -> int:
    """Show why each related post of an edition was chosen (default: the newest edition)."""
    job = options.job()
    _, edition = job.load(edition_id) if edition_id else _newest(job)
    click.echo(f"Edition {edition.id}")
    for number, story in enumerate(edition.stories, start=1):
        for lang in options.languages(job):
            if lang not in story.posts:
                continue
            click.echo(f"{number}. [{lang}] {story.posts[lang].title}")
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
@common
@click.argument("csv_file", type=click.Path(path_type=Path))
def import_(options: Options, csv_file: Path) -> int:
    """Import subscribers from a CSV (email,language,consent_source,consent_at[,name,…])."""
    job = options.job()
    result = read_csv(csv_file, job.settings.languages, job.settings.tz)
    if options.dry_run:
        click.echo(
            f"Dry run: {len(result.subscribers)} valid line(s), {len(result.problems)} rejected;"
            " nothing imported."
        )
        added = 0
    else:
        added = job.audience().add(result.subscribers, job.clock())
        click.echo(
            f"{len(result.subscribers)} valid line(s): {added} new, "
            f"{len(result.subscribers) - added} updated; {len(result.problems)} rejected."
        )
    if result.extra_columns:
        click.echo(f"Extra columns kept as attributes: {', '.join(result.extra_columns)}")
    for problem in result.problems:
        click.echo(problem, err=True)
    structlog.get_logger().info(
        "subscribers_imported",
        valid=len(result.subscribers),
        added=added,
        rejected=len(result.problems),
    )
    return ExitCode.USAGE if result.problems else ExitCode.OK


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
@common
@click.argument("address", required=False)
@click.option("--token", help="The token of an unsubscribe link (its signature is checked).")
def unsubscribe(options: Options, address: str | None, token: str | None) -> int:
    """Unsubscribe ADDRESS (or the address a link's --token names): never emailed again.

    The company's unsubscribe page can call `buzz subscribers unsubscribe --token TOKEN`."""
    job = options.job()
    if token:
        address = job.verify_token(token)
    if not address:
        raise UsageError("usage: buzz subscribers unsubscribe ADDRESS | --token TOKEN")
    if options.dry_run:
        if all(sub.email.lower() != address.lower() for sub in job.audience().members(None)):
            raise UsageError(f"{address}: not a subscriber")
        click.echo(f"Dry run: {address} would be unsubscribed.")
        return ExitCode.OK
    if not job.audience().remove(address, job.clock()):
        raise UsageError(f"{address}: not a subscriber")
    click.echo(f"{address} is unsubscribed.")
    return ExitCode.OK


# entry point ----------------------------------------------------------------------------------


def main() -> None:
    """Run `buzz`; every failure becomes one line on stderr and a contract exit code."""
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = ExitCode.USAGE
    except click.ClickException as exc:
        exc.show()
        code = ExitCode.USAGE
    except BuzzError as exc:
        for line in str(exc).splitlines():
            click.echo(f"buzz: {line}", err=True)
        code = exc.exit_code
    except Exception as exc:
        log.log.exception("crashed", error=f"{type(exc).__name__}: {exc}")
        click.echo(f"buzz: unexpected error: {type(exc).__name__}: {exc}", err=True)
        code = ExitCode.FAILED
    sys.exit(int(code) if isinstance(code, int) else ExitCode.OK)
