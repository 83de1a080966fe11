"""Transports: where a finished message goes — the outbox (.eml files) or Amazon SES — and how
each provider's answers map onto the send loop's outcomes (sent, rejected, transient, in doubt,
quota reached, account refused)."""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
)

from pipeline.errors import BuzzError, DeliveryError, Outcome
from pipeline.log import log
from pipeline.models import Recipient
from pipeline.text import redact_addresses

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

SANDBOX_RATE = 1.0  # messages per second when the account's own rate cannot be read
_NO_ACCOUNT_READ = ("AccessDeniedException", "NotFoundException", "404")
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
# Told apart by the provider's error code and HTTP status, never by the words of its message.
# SES v2 answers 429 TooManyRequestsException when the sending rate is exceeded and
# LimitExceededException once the 24-hour quota is used up; the query API (and other AWS
# front ends) answers Throttling / ThrottlingException for both, so those are throttling here,
# and a stop they cause is checked against GetAccount's quota (see deliver.send_language).
THROTTLING_CODES = frozenset({"TooManyRequestsException", "ThrottlingException", "Throttling"})
DAILY_QUOTA_CODE = "LimitExceededException"


class Rejected(BuzzError):
    """The provider refused this one message for good (e.g. MessageRejected)."""


class Transient(BuzzError):
    """Throttling, a 5xx or a connection that never reached the provider: safe to retry.
    `throttled`: the provider said "too fast" (429 or a throttling code)."""

    outcome = Outcome.PROVIDER_UNAVAILABLE

    def __init__(self, message: str, *, throttled: bool = False) -> None:
        super().__init__(message)
        self.throttled = throttled


class Ambiguous(BuzzError):
    """The request left, the answer never came: the message may or may not have been sent."""


class QuotaReached(BuzzError):
    """The account's sending quota is used up: stop now, resume at a later run."""

    outcome = Outcome.QUOTA_REACHED


@dataclass(frozen=True, slots=True)
class Quota:
    """What the provider lets the account send: messages per second, and how many more in the
    current 24 hours (None: no limit)."""

    max_rate: float | None
    remaining_24h: int | None
    known: bool = True  # False: the provider would not say; assume the sandbox's limits


class Transport(Protocol):
    """Hands one complete message to a provider; returns the provider's message id."""

    def send(self, recipient: Recipient, message: bytes) -> str:
        """Deliver `message` to `recipient`; raise Rejected, Transient, Ambiguous,
        QuotaReached or DeliveryError."""
        ...

    def quota(self) -> Quota:
        """The account's sending limits, now."""
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

    def quota(self) -> Quota:
        """A folder has no limits."""
        return Quota(max_rate=None, remaining_24h=None)


class RehearsalTransport:
    """A dry run's transport: takes each finished message and hands it to no one. The
    account's limits are still read from the real transport (reading changes nothing)."""

    def __init__(self, real: Transport) -> None:
        self.real = real
        self._ids = itertools.count(1)

    def send(self, recipient: Recipient, message: bytes) -> str:
        """Discard `message`; a made-up id."""
        return f"dry-run:{next(self._ids)}"

    def quota(self) -> Quota:
        """The real transport's limits."""
        return self.real.quota()


def ses_client(region: str, connections: int = 10) -> SESV2Client:
    """An SES v2 client from the standard AWS chain, botocore's own retries off."""
    config = Config(
        retries={"total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=connections,
    )
    return boto3.client("sesv2", region_name=region, config=config)


class SesTransport:
    """Amazon SES v2 `SendEmail` with raw MIME; credentials from the standard AWS chain.

    botocore's own retries are off: the send loop owns retries, so attempts never multiply.
    """

    def __init__(
        self,
        region: str,
        configuration_set: str = "",
        connections: int = 10,
        list_management: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.client = ses_client(region, connections)
        self.configuration_set = configuration_set
        self.list_management = list_management or {}

    def send(self, recipient: Recipient, message: bytes) -> str:
        """Send through SES, translating its errors into the send loop's outcomes. With an
        SES contact list, the message names its list and topic (SES then adds the one-click
        headers and fills in its unsubscribe link)."""
        request: dict[str, Any] = {
            "Destination": {"ToAddresses": [recipient.email]},
            "Content": {"Raw": {"Data": message}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        if recipient.lang in self.list_management:
            contact_list, topic = self.list_management[recipient.lang]
            request["ListManagementOptions"] = {"ContactListName": contact_list, "TopicName": topic}
        try:
            answer = self.client.send_email(**request)
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

    def quota(self) -> Quota:
        """`GetAccount`'s SendQuota. When it cannot be read (a policy without ses:GetAccount),
        the send uses `delivery.max_send_rate`, else the sandbox's 1 message per second."""
        try:
            account = self.client.get_account()
        except NoCredentialsError:
            raise DeliveryError("no AWS credentials found in the standard AWS chain") from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            refused = _classify(exc)
            if isinstance(refused, DeliveryError) and code not in _NO_ACCOUNT_READ:
                raise refused from None
            return _unknown(exc)
        except BotoCoreError as exc:
            return _unknown(exc)
        quota = account.get("SendQuota", {})
        daily = int(quota.get("Max24HourSend", -1))
        sent = int(quota.get("SentLast24Hours", 0))
        return Quota(
            max_rate=float(quota.get("MaxSendRate", SANDBOX_RATE)) or SANDBOX_RATE,
            remaining_24h=None if daily < 0 else max(0, daily - sent),
        )


def _unknown(exc: Exception) -> Quota:
    log.warning("account_quota_unknown", error=str(exc))
    return Quota(max_rate=SANDBOX_RATE, remaining_24h=None, known=False)


def _classify(exc: ClientError) -> BuzzError:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    text = f"{code}: {exc.response.get('Error', {}).get('Message', '')}".strip()
    if code in ACCOUNT_ERRORS:
        return DeliveryError(f"SES refused the account: {text}")
    if code == DAILY_QUOTA_CODE:
        return QuotaReached(f"SES sending quota reached: {text}")
    if code in THROTTLING_CODES or status == 429:
        return Transient(text, throttled=True)
    if status >= 500:
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
