"""Send: transports (the outbox, Amazon SES) and the ledger-driven send loop.

The ledger makes a real send at-most-once per recipient: a row is marked `sending` (and
committed) before the provider is called and `sent` after it answered, so a row still
`sending` after a crash is reported `in_doubt`, never silently resent.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
)
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from pipeline.audience import Audience
from pipeline.errors import BuzzError, DeliveryError, ExitCode
from pipeline.log import log
from pipeline.models import DeliveryState, Recipient
from pipeline.store import Store
from pipeline.text import redact_addresses

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

PROGRESS_EVERY_S = 10.0
ACCOUNT_ERRORS = {
    "AccountSuspendedException",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "NotFoundException",
}


class Rejected(BuzzError):
    """The provider refused this one message for good (e.g. MessageRejected)."""


class Transient(BuzzError):
    """Throttling, a 5xx or a connection that never reached the provider: safe to retry."""

    exit_code = ExitCode.TEMPFAIL


class Ambiguous(BuzzError):
    """The request left, the answer never came: the message may or may not have been sent."""


class QuotaReached(BuzzError):
    """The account's sending quota is used up: stop now, resume at a later run."""

    exit_code = ExitCode.TEMPFAIL


class Transport(Protocol):
    """Hands one complete message to a provider; returns the provider's message id."""

    def send(self, recipient: Recipient, message: bytes) -> str:
        """Deliver `message` to `recipient`; raise Rejected, Transient, Ambiguous or
        DeliveryError."""
        ...


def short_hash(email: str) -> str:
    """How an address appears in logs and file names: never in clear."""
    return hashlib.sha256(email.lower().encode()).hexdigest()[:12]


class OutboxTransport:
    """Writes each message as an .eml file under a folder: the demo's and the reviewer's
    provider."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, recipient: Recipient, message: bytes) -> str:
        """Write `message` atomically to `<folder>/<lang>/<address hash>.eml`."""
        target = self.folder / recipient.lang / f"{short_hash(recipient.email)}.eml"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, message)
        return f"outbox:{target.name}"


class SesTransport:
    """Amazon SES v2 `SendEmail` with raw MIME; credentials from the standard AWS chain.

    botocore's own retries are off: the send loop owns retries, so attempts never multiply.
    """

    def __init__(self, region: str, configuration_set: str = "") -> None:
        config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
        self.client: SESV2Client = boto3.client("sesv2", region_name=region, config=config)
        self.configuration_set = configuration_set

    def send(self, recipient: Recipient, message: bytes) -> str:
        """Send through SES, translating its errors into the send loop's four outcomes."""
        try:
            if self.configuration_set:
                answer = self.client.send_email(
                    Destination={"ToAddresses": [recipient.email]},
                    Content={"Raw": {"Data": message}},
                    ConfigurationSetName=self.configuration_set,
                )
            else:
                answer = self.client.send_email(
                    Destination={"ToAddresses": [recipient.email]},
                    Content={"Raw": {"Data": message}},
                )
        except ClientError as exc:
            raise _classify(exc) from None
        except NoCredentialsError:
            raise DeliveryError("no AWS credentials found in the standard AWS chain") from None
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise Transient(f"cannot reach SES: {exc}") from None
        except BotoCoreError as exc:
            # the request may have left: a retry could send the message twice
            raise Ambiguous(f"no usable answer from SES: {exc}") from None
        return answer["MessageId"]


def _classify(exc: ClientError) -> BuzzError:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    text = f"{code}: {exc.response.get('Error', {}).get('Message', '')}".strip()
    if code in ACCOUNT_ERRORS:
        return DeliveryError(f"SES refused the account: {text}")
    if code == "LimitExceededException" or "quota" in text.lower():
        return QuotaReached(f"SES sending quota reached: {text}")
    if status == 429 or status >= 500 or code in ("TooManyRequestsException", "Throttling"):
        return Transient(text)
    return Rejected(text)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def redact(text: str) -> str:
    """Provider messages can quote the recipient: keep only the address's short hash."""
    return redact_addresses(text, lambda address: f"<{short_hash(address)}>")


def _failed(store: Store, edition_id: str, recipient: Recipient, error: str) -> None:
    store.mark(edition_id, recipient.email, DeliveryState.FAILED, error=redact(error))
    log.warning(
        "recipient_failed", lang=recipient.lang, to=short_hash(recipient.email), error=redact(error)
    )


# The send loop --------------------------------------------------------------------------------


@dataclass(slots=True)
class SendReport:
    """The ledger of one language of one edition after a send."""

    edition_id: str
    lang: str
    counts: dict[str, int] = field(default_factory=dict)
    attempted: int = 0


_deliver = retry(
    retry=retry_if_exception_type(Transient),
    stop=stop_after_attempt(5),
    wait=wait_exponential_jitter(multiplier=0.5, max=8),
    reraise=True,
)


def send_language(
    store: Store,
    edition_id: str,
    lang: str,
    audience: Audience,
    transport: Transport,
    make_message: Callable[[Recipient], bytes],
    *,
    resend_in_doubt: bool = False,
) -> SendReport:
    """Send one language of an edition to every recipient of its ledger not yet sent.

    The audience is frozen into the ledger the first time; a later call resumes it.
    """
    report = SendReport(edition_id, lang)
    frozen = store.freeze_audience(edition_id, lang, audience.recipients(lang))
    interrupted = store.mark_interrupted(edition_id, lang)
    if interrupted:
        log.warning("send_in_doubt", edition=edition_id, lang=lang, in_doubt=interrupted)
    wanted = [DeliveryState.PENDING] + ([DeliveryState.IN_DOUBT] if resend_in_doubt else [])
    todo = store.deliveries_in(edition_id, lang, wanted)
    log.info("send_started", edition=edition_id, lang=lang, frozen=frozen, todo=len(todo))
    started = last_progress = time.monotonic()
    for recipient in todo:
        if not audience.is_subscribed(recipient):
            store.mark(edition_id, recipient.email, DeliveryState.SKIPPED, error="unsubscribed")
            continue
        try:
            message = make_message(recipient)
        except Exception as exc:  # one unbuildable message must not hold up the others
            _failed(store, edition_id, recipient, f"cannot build the message: {exc!r}")
            continue
        store.mark(edition_id, recipient.email, DeliveryState.SENDING)
        report.attempted += 1
        try:
            message_id = _deliver(transport.send)(recipient, message)
        except Rejected as exc:
            _failed(store, edition_id, recipient, str(exc))
            continue
        except Ambiguous as exc:
            error = redact(str(exc))
            store.mark(edition_id, recipient.email, DeliveryState.IN_DOUBT, error=error)
            log.warning(
                "recipient_in_doubt", lang=lang, to=short_hash(recipient.email), error=error
            )
            continue
        except (Transient, QuotaReached, DeliveryError) as exc:
            # the provider did not take it: back in the queue for the next run
            store.mark(edition_id, recipient.email, DeliveryState.PENDING, error=redact(str(exc)))
            raise
        store.mark(edition_id, recipient.email, DeliveryState.SENT, message_id=message_id)
        if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
            last_progress = time.monotonic()
            log.info(
                "send_progress",
                edition=edition_id,
                lang=lang,
                done=report.attempted,
                total=len(todo),
            )
    report.counts = store.delivery_counts(edition_id).get(lang, {})
    log.info(
        "send_finished",
        edition=edition_id,
        lang=lang,
        **report.counts,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )
    return report
