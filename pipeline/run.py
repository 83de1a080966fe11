"""One run of the job, stage after stage: gather, compose, render, write, send. Nothing else.

`Job` holds what every stage needs (settings, store, clock) and offers each command's work;
the CLI only parses, calls one of these, and prints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from pipeline import draft, message
from pipeline.audience import Audience, LocalAudience, Signer
from pipeline.compose import compose
from pipeline.config import Settings
from pipeline.curate import Curator
from pipeline.deliver import HEADROOM, Progress, SendReport, send_language
from pipeline.errors import BuzzError, ConfigError, ExitCode, UsageError
from pipeline.feeds import BackfillReport, FeedReport, backfill, gather, unavailable_languages
from pipeline.fetch import FeedLimits, user_agent
from pipeline.log import log, stage
from pipeline.models import DeliveryState, Edition, EditionState, Post, Recipient
from pipeline.postindex import PostIndex
from pipeline.render import Rendered, Sender, render, strings
from pipeline.ses_audience import SesAudience
from pipeline.store import Store, is_locked
from pipeline.text import canonical_url
from pipeline.transport import (
    OutboxTransport,
    SesTransport,
    Transport,
    atomic_write,
    redact,
    ses_client,
)

SECRET_ENV = "BUZZ_UNSUBSCRIBE_SECRET"  # noqa: S105 - the variable's name, not a secret
DEMO_SECRET = "buzz-outbox-demo-only"  # noqa: S105 - only ever signs links in .eml files on disk
SAMPLE_RECIPIENT = {"en": "reader@example.com", "fr": "lecteur@example.com"}
UNFINISHED = (EditionState.DRAFT, EditionState.PROOFED, EditionState.SENDING)
EDITABLE = (EditionState.DRAFT, EditionState.PROOFED)


@dataclass(slots=True)
class Built:
    """A composed, rendered and written edition."""

    edition: Edition
    folder: Path
    rendered: dict[str, Rendered]


@dataclass(frozen=True, slots=True)
class EditionStatus:
    """One edition's state and, per language, its ledger counts."""

    id: str
    state: str
    languages: dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Rehearsal:
    """What a dry run found: messages per language, the pace, the quota left."""

    would_send: dict[str, int]
    rate: float | None
    quota_left: int | None

    @property
    def seconds(self) -> float | None:
        """How long the send would take (None: no pace limit)."""
        total = sum(self.would_send.values())
        if self.quota_left is not None:
            total = min(total, self.quota_left)
        return total / self.rate if self.rate else None


@dataclass(slots=True)
class SendOutcome:
    """What a send of one edition did, per language."""

    edition_id: str
    reports: list[SendReport] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Recipients that failed permanently."""
        return sum(r.counts.get(DeliveryState.FAILED, 0) for r in self.reports)


@dataclass(slots=True)
class RunResult:
    """What one `buzz run` did, stage by stage."""

    feeds: list[FeedReport]
    unavailable: list[str] = field(default_factory=list)
    resumed: list[SendOutcome] = field(default_factory=list)
    built: Built | None = None
    sent: SendOutcome | None = None
    rehearsals: dict[str, Rehearsal] = field(default_factory=dict)
    awaiting_approval: bool = False

    @property
    def exit_code(self) -> ExitCode:
        """75 when a language's feeds all failed (try again later), 3 when some recipient
        failed permanently, else 0."""
        if self.unavailable:
            return ExitCode.TEMPFAIL
        sends = [*self.resumed, *([self.sent] if self.sent else [])]
        return ExitCode.SOME_FAILED if any(s.failed for s in sends) else ExitCode.OK

    @property
    def outcome(self) -> str:
        """One word for the run: feeds_unavailable, nothing_new, sent, dry_run or
        awaiting_approval."""
        if self.unavailable:
            return "feeds_unavailable"
        if self.built is None:
            return "nothing_new"
        if self.rehearsals:
            return "dry_run"
        return "awaiting_approval" if self.awaiting_approval else "sent"

    def summary(self) -> dict[str, object]:
        """The counts of the run's final log event."""
        sends = [*self.resumed, *([self.sent] if self.sent else [])]
        return {
            "outcome": self.outcome,
            "edition": self.built.edition.id if self.built else None,
            "stories": len(self.built.edition.stories) if self.built else 0,
            "feeds": len(self.feeds),
            "feeds_failed": sum(r.status == "error" for r in self.feeds),
            "languages_unavailable": self.unavailable,
            "new_posts": sum(r.new for r in self.feeds),
            "deliveries": {f"{s.edition_id}/{r.lang}": r.counts for s in sends for r in s.reports},
            "exit_code": int(self.exit_code),
        }


class Job:
    """The work behind every command, on one configuration and one state store."""

    def __init__(
        self, settings: Settings, store: Store, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.progress: Progress | None = None  # told how a send advances (a terminal's bar)
        self.sender = Sender(
            company=settings.sender.company,
            postal_address=settings.sender.postal_address,
            contact_url=settings.sender.contact_url,
            logo_url=settings.sender.logo_url,
            preferences_url=settings.sender.preferences_url,
        )

    def run(self, langs: Sequence[str], *, dry_run: bool = False) -> RunResult:
        """The scheduled job: gather, finish any interrupted send, build the next edition and
        send it (or stop for approval, or only rehearse).

        When every feed of a language failed, no edition is built: it would lack that
        language's stories and break its pairs. The run says so and exits 75.
        """
        started = self.clock()
        run_id = str(structlog.contextvars.get_contextvars().get("run_id", "unknown"))
        try:
            with stage("run_finished") as summary:
                result = RunResult(feeds=self.fetch())
                for edition_id in self.unfinished_sends():
                    _, edition = self.load(edition_id)
                    if dry_run:
                        result.rehearsals[edition_id] = self.rehearse(edition, langs)
                    else:
                        result.resumed.append(self.send(edition, langs))
                result.unavailable = unavailable_languages(result.feeds, langs)
                if result.unavailable:
                    log.warning("language_unavailable", languages=result.unavailable)
                else:
                    result.built = self.build()
                if result.built is None:
                    pass
                elif dry_run:
                    result.rehearsals[result.built.edition.id] = self.rehearse(
                        result.built.edition, langs
                    )
                elif self.settings.edition.require_approval:
                    result.awaiting_approval = True
                    reviewers = self.settings.edition.reviewers
                    if reviewers:
                        self.proof(result.built.edition, reviewers, langs)
                else:
                    result.sent = self.send(
                        result.built.edition, langs, rendered=result.built.rendered
                    )
                summary.update(result.summary())
        except BuzzError as exc:
            error = {"error": redact(str(exc))}
            self.store.record_run(run_id, started, type(exc).__name__, exc.exit_code, error)
            raise
        self.store.record_run(run_id, started, result.outcome, result.exit_code, result.summary())
        return result

    # Gather ----------------------------------------------------------------------------------

    def _feeds(self) -> tuple[list[tuple[str, str]], FeedLimits]:
        feeds = [
            (url, lang)
            for lang in self.settings.languages
            for url in self.settings.feed_locations(lang)
        ]
        limits = FeedLimits(
            timeout_s=self.settings.feeds.timeout_s,
            max_bytes=self.settings.feeds.max_bytes,
            user_agent=user_agent(self.settings.sender.contact_url),
        )
        return feeds, limits

    def fetch(self, *, dry_run: bool = False) -> list[FeedReport]:
        """Fetch every configured feed once and store what is new (unless `dry_run`)."""
        feeds, limits = self._feeds()
        with stage("fetch_finished", feeds=len(feeds), dry_run=dry_run) as counts:
            reports = gather(
                feeds, limits, self.settings.feeds, self.store, self.clock(), dry_run=dry_run
            )
            counts["failed"] = sum(r.status == "error" for r in reports)
            counts["new_posts"] = sum(r.new for r in reports)
        return reports

    def backfill(self, max_pages: int) -> list[BackfillReport]:
        """Seed the archive from the older pages of every http(s) feed."""
        feeds, limits = self._feeds()
        return backfill(feeds, limits, self.store, self.clock(), max_pages)

    # Compose, render, write ------------------------------------------------------------------

    def build(self, *, write: bool = True) -> Built | None:
        """Compose the next edition (rebuilding the open draft, if any), render it and, when
        `write`, store it and write its folder. None when there is nothing new."""
        now = self.clock()
        langs = self.settings.languages
        edition_id = self._draft_id() or self._new_edition_id(now)
        adjustments = draft.read(self.edition_folder(edition_id))
        index = PostIndex(self.store)
        for first, second in adjustments.pairs:
            index.decide(self.find_post(first), self.find_post(second), "force", now)
        unsent = {lang: self.store.unsent_posts(lang, now) for lang in langs}
        curator = Curator(self.settings, index)
        curator.prepare(unsent, now)
        with stage("compose_finished") as counts:
            edition = compose(
                edition_id,
                langs,
                unsent,
                curator.translations,
                curator.related,
                now,
                self.settings.edition,
            )
            if edition is not None:
                edition = draft.apply(edition, adjustments, self.edition_folder(edition_id))
            counts["stories"] = len(edition.stories) if edition else 0
        if edition is None or not edition.stories:
            return None
        if not write:
            return Built(edition, self.edition_folder(edition.id), self.render_all(edition))
        self.store.save_draft(edition)
        return self._write(edition)

    def _draft_id(self) -> str | None:
        return next((i for i, state in self.store.editions() if state in EDITABLE), None)

    def _new_edition_id(self, now: datetime) -> str:
        day = now.astimezone(self.settings.tz).strftime("%Y-%m-%d")
        taken = {edition_id for edition_id, _ in self.store.editions()}
        suffix = 1
        candidate = day
        while candidate in taken:
            suffix += 1
            candidate = f"{day}-{suffix}"
        return candidate

    def render_all(self, edition: Edition) -> dict[str, Rendered]:
        """Each configured language of `edition` that has stories, rendered."""
        with stage("render_finished", edition=edition.id) as counts:
            rendered = {
                lang: render(
                    edition,
                    lang,
                    self.settings.language_settings[lang].name,
                    self.sender,
                    self.settings.topics.get(lang) if self.settings.edition.utm else None,
                    self.settings.language_settings[lang].subject,
                    self.settings.language_settings[lang].preheader,
                )
                for lang in edition.languages
                if edition.stories_in(lang)
            }
            counts["languages"] = sorted(rendered)
            counts["html_bytes"] = {lang: len(r.html.encode()) for lang, r in rendered.items()}
        return rendered

    def edition_folder(self, edition_id: str) -> Path:
        """`<output_dir>/editions/<id>/`."""
        return self.settings.output_dir / "editions" / edition_id

    def _write(self, edition: Edition) -> Built:
        rendered = self.render_all(edition)
        audience = self.audience()
        folder = self.edition_folder(edition.id)
        folder.mkdir(parents=True, exist_ok=True)
        files: dict[str, bytes] = {
            "edition.json": json.dumps(edition.to_json(), ensure_ascii=False, indent=2).encode()
        }
        if not (folder / draft.FILE).exists():
            files[draft.FILE] = draft.template(edition).encode()
        for lang, part in rendered.items():
            sample = Recipient(email=SAMPLE_RECIPIENT[lang], lang=lang)
            html_part, text_part = part.personalize(
                {"unsubscribe_url": audience.unsubscribe_url(sample)}
            )
            files[f"{lang}.html"] = html_part.encode()
            files[f"{lang}.txt"] = text_part.encode()
            files[f"{lang}.eml"] = self._composer(part, audience)(sample)
        for name, data in files.items():
            atomic_write(folder / name, data)
        log.info("edition_written", edition=edition.id, folder=str(folder), files=sorted(files))
        return Built(edition, folder, rendered)

    # Send ------------------------------------------------------------------------------------

    def audience(self) -> Audience:
        """The configured audience: the state store's subscribers, or an SES contact list."""
        if self.settings.audience.source == "ses":
            client = ses_client(self.settings.region, self.settings.delivery.workers)
            return SesAudience(
                client,
                self.settings.audience.contact_list,
                self.settings.topics,
                self.settings.audience.ses_api_rate,
            )
        return LocalAudience(self.store, self.settings.audience.unsubscribe_url, self._signer)

    def verify_token(self, token: str) -> str:
        """The address an unsubscribe token names, if buzz signed it."""
        address = self._signer().verify(token)
        if address is None:
            raise UsageError("this unsubscribe token is not valid (altered, or another secret)")
        return address

    def _signer(self) -> Signer:
        secret = os.environ.get(SECRET_ENV, "")
        if secret:
            return Signer(secret)
        if self.settings.delivery.transport == "outbox":
            return Signer(DEMO_SECRET)
        raise ConfigError(
            [f"{SECRET_ENV} is not set: the local audience needs it to sign unsubscribe links"]
        )

    def transport(self, edition_id: str, proof: bool = False) -> Transport:
        """The configured transport; the outbox writes under `<output_dir>/outbox/<edition>/`."""
        if self.settings.delivery.transport == "ses":
            lists = {}
            if self.settings.audience.source == "ses" and not proof:
                contact_list = self.settings.audience.contact_list
                lists = {
                    lang: (contact_list, topic) for lang, topic in self.settings.topics.items()
                }
            return SesTransport(
                self.settings.region,
                self.settings.delivery.configuration_set,
                connections=self.settings.delivery.workers,
                list_management=lists,
            )
        folder = self.settings.output_dir / "outbox" / edition_id
        return OutboxTransport(folder / "proofs" if proof else folder)

    def _composer(
        self, rendered: Rendered, audience: Audience, prefix: str = ""
    ) -> Callable[[Recipient], bytes]:
        """Builds each recipient's message from one template of `rendered`."""
        lang_settings = self.settings.language_settings[rendered.lang]
        topic = self.settings.topics.get(rendered.lang, f"buzz-{rendered.lang}")
        options = message.ListOptions(
            list_id=message.list_id(lang_settings.name, topic, lang_settings.from_),
            unsubscribe_mailto=self.settings.audience.unsubscribe_mailto,
        )
        template = message.MessageTemplate(
            rendered, lang_settings.from_, options, prefix,
            provider_unsubscribes=audience.provider_unsubscribes,
        )  # fmt: skip
        return lambda r: template.for_recipient(r, audience.unsubscribe_url(r), self.clock())

    def load(self, edition_id: str | None) -> tuple[EditionState, Edition]:
        """An edition by id, or the newest one built and not completely sent."""
        if edition_id is None:
            edition_id = next(
                (i for i, state in self.store.editions() if state in UNFINISHED), None
            )
            if edition_id is None:
                raise UsageError("no edition is waiting to be sent; run 'buzz build' first")
        found = self.store.edition(edition_id)
        if found is None:
            raise UsageError(f"no edition {edition_id!r}; 'buzz status' lists them")
        return found

    def send(
        self,
        edition: Edition,
        langs: Sequence[str],
        *,
        resend_in_doubt: bool = False,
        rendered: dict[str, Rendered] | None = None,
    ) -> SendOutcome:
        """Send `edition` to its audience in `langs`, resuming any earlier attempt
        (`rendered`: the edition's parts when the caller has just rendered them)."""
        audience = self.audience()
        transport = self.transport(edition.id)
        outcome = SendOutcome(edition.id)
        self.store.set_edition_state(edition.id, EditionState.SENDING)
        for lang, part in (rendered or self.render_all(edition)).items():
            if lang not in langs:
                continue
            outcome.reports.append(
                send_language(
                    self.store,
                    edition.id,
                    lang,
                    audience,
                    transport,
                    self._composer(part, audience),
                    resend_in_doubt=resend_in_doubt,
                    max_rate=self.settings.delivery.max_send_rate,
                    workers=self.settings.delivery.workers,
                    progress=self.progress,
                )
            )
        self._settle(edition)
        return outcome

    def _settle(self, edition: Edition) -> None:
        counts = self.store.delivery_counts(edition.id)
        expected = [lang for lang in edition.languages if edition.stories_in(lang)]
        if any(lang not in counts for lang in expected):
            return
        if any(c[DeliveryState.PENDING] or c[DeliveryState.SENDING] for c in counts.values()):
            return
        troubled = any(
            c[DeliveryState.FAILED] or c[DeliveryState.IN_DOUBT] for c in counts.values()
        )
        self.store.set_edition_state(
            edition.id, EditionState.PARTIAL if troubled else EditionState.SENT
        )

    def rehearse(self, edition: Edition, langs: Sequence[str]) -> Rehearsal:
        """A dry run: every message built, none handed to the provider, the ledger untouched;
        and how long the send would take at the account's rate, within its daily quota."""
        audience = self.audience()
        would_send: dict[str, int] = {}
        for lang, rendered in self.render_all(edition).items():
            if lang in langs:
                compose_message = self._composer(rendered, audience)
                would_send[lang] = sum(
                    1 for recipient in audience.recipients(lang) if compose_message(recipient)
                )
        quota = self.transport(edition.id).quota()
        cap = self.settings.delivery.max_send_rate
        rates = [r for r in (cap, quota.max_rate if quota.known or not cap else None) if r]
        rehearsal = Rehearsal(would_send, min(rates) * HEADROOM if rates else None,
                              quota.remaining_24h)  # fmt: skip
        log.info("dry_run_finished", edition=edition.id, would_send=would_send,
                 rate=rehearsal.rate, quota_left=quota.remaining_24h,
                 seconds=rehearsal.seconds)  # fmt: skip
        return rehearsal

    def proof(self, edition: Edition, addresses: Sequence[str], langs: Sequence[str]) -> list[str]:
        """Send every language to `addresses` only, outside the ledger; the provider's ids."""
        audience = self.audience()
        transport = self.transport(edition.id, proof=True)
        ids = []
        for lang, rendered in self.render_all(edition).items():
            if lang not in langs:
                continue
            compose_message = self._composer(rendered, audience, strings(lang)["proof"])
            for address in addresses:
                recipient = Recipient(email=address, lang=lang)
                ids.append(transport.send(recipient, compose_message(recipient)))
        self.store.mark_proofed(edition.id)
        log.info("proof_sent", edition=edition.id, messages=len(ids))
        return ids

    def find_post(self, ref: str) -> Post:
        """A post by guid or URL (its canonical form)."""
        post = self.store.post(ref) or self.store.post(canonical_url(ref) or ref)
        if post is None:
            raise UsageError(f"no post with guid or URL {ref!r}")
        return post

    def status(self, edition_id: str | None = None) -> list[EditionStatus]:
        """Every edition (or one), newest first, with its ledger per language.

        A message marked `sending` is in flight while a send holds the lock; once no process
        does, it is counted `in_doubt`: it may or may not have left.
        """
        found = [(i, s) for i, s in self.store.editions() if edition_id in (None, i)]
        if edition_id and not found:
            raise UsageError(f"no edition {edition_id!r}; 'buzz status' lists them")
        live = is_locked(self.settings.state_path)
        return [EditionStatus(i, str(state), self._ledger(i, live)) for i, state in found]

    def _ledger(self, edition_id: str, live: bool) -> dict[str, dict[str, int]]:
        ledger = {}
        for lang, c in self.store.delivery_counts(edition_id).items():
            in_flight = c[DeliveryState.SENDING]
            ledger[lang] = {
                "recipients": sum(c.values()),
                "sent": c[DeliveryState.SENT],
                "failed": c[DeliveryState.FAILED],
                "in_doubt": c[DeliveryState.IN_DOUBT] + (0 if live else in_flight),
                "skipped": c[DeliveryState.SKIPPED],
                "pending": c[DeliveryState.PENDING],
                "sending": in_flight if live else 0,
            }
        return ledger

    def unfinished_sends(self) -> list[str]:
        """Editions whose send was interrupted, oldest first."""
        return [i for i, state in reversed(self.store.editions()) if state is EditionState.SENDING]
