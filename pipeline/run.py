"""One run of the job, stage after stage: gather, compose, render, write, send. Nothing else.

`Job` holds what every stage needs (settings, store, clock) and offers each command's work;
the CLI only parses, calls one of these, and prints.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from pipeline import draft, message
from pipeline.audience import Audience, LocalAudience, Signer
from pipeline.compose import compose
from pipeline.config import Settings
from pipeline.curate import Curator
from pipeline.deliver import (
    BreakerPolicy,
    Progress,
    SendReport,
    effective_rate,
    predicted_seconds,
    send_language,
)
from pipeline.errors import ConfigError, ExitCode, Outcome, UsageError
from pipeline.feeds import BackfillReport, FeedReport, backfill, gather, unavailable_languages
from pipeline.fetch import FeedLimits, user_agent
from pipeline.log import log, stage
from pipeline.models import DeliveryState, Edition, EditionState, Post, Recipient
from pipeline.postindex import PostIndex
from pipeline.render import Rendered, Sender, render, strings
from pipeline.ses_audience import SesAudience
from pipeline.store import Store, is_locked, locked
from pipeline.text import canonical_url
from pipeline.transport import (
    OutboxTransport,
    RehearsalTransport,
    SesTransport,
    Transport,
    atomic_write,
    ses_client,
)

SECRET_ENV = "BUZZ_UNSUBSCRIBE_SECRET"  # noqa: S105 - the variable's name, not a secret
DEMO_SECRET = "buzz-outbox-demo-only"  # noqa: S105 - only ever signs links in .eml files on disk
SAMPLE_RECIPIENT = {"en": "reader@example.com", "fr": "lecteur@example.com"}
UNFINISHED = (EditionState.DRAFT, EditionState.PROOFED, EditionState.SENDING)
EDITABLE = (EditionState.DRAFT, EditionState.PROOFED)


@dataclass(frozen=True, slots=True)
class Ending:
    """How a command ended: its outcome, its exit code, and the counts its `run_finished`
    event carries (and the runs table keeps)."""

    outcome: Outcome
    counts: Mapping[str, object]
    exit_code: ExitCode

    @classmethod
    def of(cls, outcome: Outcome, **counts: object) -> Ending:
        """An ending with the exit code of its outcome."""
        return cls(outcome, counts, outcome.exit_code)

    def rehearsed(self) -> Ending:
        """This ending, reached by a dry run: outcome `dry_run`, the exit code the real run
        would have had, and that run's outcome as `would_be`."""
        return Ending(Outcome.DRY_RUN, {**self.counts, "would_be": str(self.outcome)},
                      self.exit_code)  # fmt: skip


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
        return predicted_seconds(sum(self.would_send.values()), self.rate, self.quota_left)


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
    def outcome(self) -> Outcome:
        """feeds_unavailable when a language's feeds all failed (try again later), partial
        when some recipient failed permanently, nothing_new when nothing was built or sent,
        awaiting_approval, else sent (a rehearsal: what the real run would have done)."""
        sends = [*self.resumed, *([self.sent] if self.sent else [])]
        if self.unavailable:
            return Outcome.FEEDS_UNAVAILABLE
        if any(s.failed for s in sends):
            return Outcome.PARTIAL
        if self.awaiting_approval:
            return Outcome.AWAITING_APPROVAL
        if self.built is None and not sends and not self.rehearsals:
            return Outcome.NOTHING_NEW
        return Outcome.SENT

    def ending(self) -> Ending:
        """The run's outcome and the counts of its `run_finished` event."""
        sends = [*self.resumed, *([self.sent] if self.sent else [])]
        return Ending.of(
            self.outcome,
            edition=self.built.edition.id if self.built else None,
            stories=len(self.built.edition.stories) if self.built else 0,
            feeds=len(self.feeds),
            feeds_failed=sum(r.status == "error" for r in self.feeds),
            languages_unavailable=self.unavailable,
            new_posts=sum(r.new for r in self.feeds),
            deliveries={f"{s.edition_id}/{r.lang}": r.counts for s in sends for r in s.reports},
            would_send={edition: r.would_send for edition, r in self.rehearsals.items()},
        )


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

    @property
    def rehearsal(self) -> bool:
        """A dry run: the store is a private copy, files are built and not written, messages
        are built and handed to no one."""
        return self.store.rehearsal

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the state store's lock (a rehearsal works on its own copy: it needs none, and
        touches no file)."""
        return contextlib.nullcontext() if self.rehearsal else locked(self.settings.state_path)

    def run(self, langs: Sequence[str]) -> RunResult:
        """The scheduled job: gather, finish any interrupted send, build the next edition and
        send it (or stop for approval; a rehearsal predicts each send instead).

        When every feed of a language failed, no edition is built: it would lack that
        language's stories and break its pairs. The run says so and exits 75.
        """
        result = RunResult(feeds=self.fetch())
        for edition_id in self.unfinished_sends():
            _, edition = self.load(edition_id)
            if self.rehearsal:
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
        elif self.settings.edition.require_approval:
            result.awaiting_approval = True
            reviewers = self.settings.edition.reviewers
            if reviewers:
                self.proof(result.built.edition, reviewers, langs)
        elif self.rehearsal:
            result.rehearsals[result.built.edition.id] = self.rehearse(result.built.edition, langs)
        else:
            result.sent = self.send(result.built.edition, langs, rendered=result.built.rendered)
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

    def fetch(self) -> list[FeedReport]:
        """Fetch every configured feed once and store what is new."""
        feeds, limits = self._feeds()
        with stage("fetch_finished", feeds=len(feeds)) as counts:
            reports = gather(feeds, limits, self.settings.feeds, self.store, self.clock())
            counts["failed"] = sum(r.status == "error" for r in reports)
            counts["new_posts"] = sum(r.new for r in reports)
        return reports

    def backfill(self, max_pages: int) -> list[BackfillReport]:
        """Seed the archive from the older pages of every http(s) feed."""
        feeds, limits = self._feeds()
        return backfill(feeds, limits, self.store, self.clock(), max_pages)

    # Compose, render, write ------------------------------------------------------------------

    def build(self) -> Built | None:
        """Compose the next edition (rebuilding the open draft, if any), render it, store it
        and write its folder. None when there is nothing new."""
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
                curator.translations.pairing,
            )
            if edition is not None:
                folder = self.edition_folder(edition_id)
                edition = draft.apply(edition, adjustments, folder)
                edition = replace(edition, draft_digest=draft.digest(folder, edition))
            counts["stories"] = len(edition.stories) if edition else 0
        if edition is None or not edition.stories:
            return None
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
        self.write_files(folder, files)
        return Built(edition, folder, rendered)

    def write_files(self, folder: Path, files: dict[str, bytes]) -> None:
        """Write `files` into `folder`, each atomically; a rehearsal built them and writes
        nothing (`edition_not_written`)."""
        event = "edition_not_written" if self.rehearsal else "edition_written"
        if not self.rehearsal:
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                atomic_write(folder / name, data)
        log.info(event, folder=str(folder), files=sorted(files))

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
                rehearsal=self.rehearsal,
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
        """The configured transport; the outbox writes under `<output_dir>/outbox/<edition>/`.
        A rehearsal's discards every message (and reads the account's limits)."""
        real = self._provider(edition_id, proof)
        return RehearsalTransport(real) if self.rehearsal else real

    def _provider(self, edition_id: str, proof: bool) -> Transport:
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
            feedback_sender=self.settings.sender.feedback_id,
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

    def load_to_send(self, edition_id: str | None) -> tuple[EditionState, Edition]:
        """`load`, refusing a draft whose draft.toml was changed since it was built: the
        send would silently ignore the change, and the previews would not show it."""
        state, edition = self.load(edition_id)
        folder = self.edition_folder(edition.id)
        if state in EDITABLE and edition.draft_digest:
            draft.read(folder)  # a mistake in it is reported as such, `file: key: problem`
            if draft.digest(folder, edition) != edition.draft_digest:
                raise UsageError(
                    f"{folder / draft.FILE} changed after edition {edition.id} was built: "
                    "run 'buzz build' to apply it (and look at the previews), then send"
                )
        return state, edition

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
                    breaker=BreakerPolicy.of(self.settings.delivery),
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
        rate = effective_rate(self.settings.delivery.max_send_rate, quota)
        rehearsal = Rehearsal(would_send, rate, quota.remaining_24h)
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
        log.info("proof_built" if self.rehearsal else "proof_sent", edition=edition.id,
                 messages=len(ids))  # fmt: skip
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
