"""The audience as an Amazon SES contact list: one topic per language.

SES hosts the subscription: with `ListManagementOptions` on each message it adds the
one-click `List-Unsubscribe` headers and replaces `{{amazonSESUnsubscribeUrl}}` in the body with
its own preferences page. buzz reads the list a page at a time (`ListContacts`) and keeps only
contacts opted in to the language's topic and not unsubscribed from everything — whatever
filter the server applied. Contact-management calls are throttled by SES near one a second;
buzz paces itself under that.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import BuzzError
from pipeline.models import Recipient
from pipeline.store import Subscriber

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

PLACEHOLDER = "{{amazonSESUnsubscribeUrl}}"
WRITES = frozenset({"create_contact", "update_contact", "delete_contact"})  # not in a dry run


class SesAudience:
    """Subscribers in an SES contact list."""

    provider_unsubscribes = True

    def __init__(
        self,
        client: SESV2Client,
        contact_list: str,
        topics: dict[str, str],
        calls_per_s: float = 1.0,
        *,
        rehearsal: bool = False,
    ) -> None:
        self.client = client
        self.rehearsal = rehearsal  # a dry run: read the list, change nothing in it
        self.contact_list = contact_list
        self.topics = topics
        self.interval = 1.0 / calls_per_s
        self._next_call = 0.0
        self._lock = threading.Lock()

    def _paced(self) -> None:
        with self._lock:
            wait = self._next_call - time.monotonic()
            self._next_call = max(self._next_call, time.monotonic()) + self.interval
        if wait > 0:
            time.sleep(wait)

    def _call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        if self.rehearsal and operation in WRITES:
            return {}
        self._paced()
        try:
            answer: dict[str, Any] = getattr(self.client, operation)(**arguments)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise BuzzError(
                f"SES {operation}: {error.get('Code')}: {error.get('Message')}"
            ) from None
        except BotoCoreError as exc:
            raise BuzzError(f"SES {operation}: {exc}") from None
        return answer

    def _contacts(self, topic: str | None = None) -> Iterator[dict[str, Any]]:
        arguments: dict[str, Any] = {"ContactListName": self.contact_list, "PageSize": 1000}
        if topic:
            arguments["Filter"] = {
                "FilteredStatus": "OPT_IN",
                "TopicFilter": {"TopicName": topic, "UseDefaultIfPreferenceUnavailable": True},
            }
        while True:
            page = self._call("list_contacts", **arguments)
            yield from page.get("Contacts", [])
            if not page.get("NextToken"):
                return
            arguments["NextToken"] = page["NextToken"]

    def _opted_in(self, contact: dict[str, Any], topic: str) -> bool:
        if contact.get("UnsubscribeAll"):
            return False
        for preferences in ("TopicPreferences", "TopicDefaultPreferences"):
            for preference in contact.get(preferences, []):
                if preference.get("TopicName") == topic:
                    return bool(preference.get("SubscriptionStatus") == "OPT_IN")
        return False

    def recipients(self, lang: str) -> Iterator[Recipient]:
        """Contacts opted in to `lang`'s topic, checked by buzz itself."""
        topic = self.topics[lang]
        for contact in self._contacts(topic):
            if self._opted_in(contact, topic):
                yield Recipient(email=contact["EmailAddress"], lang=lang)

    def is_subscribed(self, recipient: Recipient) -> bool:
        """SES itself drops messages to contacts who left the topic since the freeze."""
        return True

    def unsubscribe_url(self, recipient: Recipient) -> str:
        """SES's placeholder, replaced by SES with the contact's own preferences page."""
        return PLACEHOLDER

    def add(self, subscribers: list[Subscriber], now: datetime) -> int:
        """Create contacts (or update them), opted in to their language's topic; a contact who
        left a topic, or everything, stays out: an import never re-subscribes anyone."""
        existing = {c["EmailAddress"].lower(): c for c in self._contacts()}
        added = 0
        for sub in subscribers:
            known = existing.get(sub.email.lower()) or {}
            preferences = {
                p["TopicName"]: p["SubscriptionStatus"] for p in known.get("TopicPreferences", [])
            }
            topic = self.topics[sub.lang]
            left = sub.unsubscribed_at is not None or preferences.get(topic) == "OPT_OUT"
            preferences[topic] = "OPT_OUT" if left else "OPT_IN"  # other topics: as they were
            attributes = {"language": sub.lang, "name": sub.name,
                          "consent_source": sub.consent_source, "consent_at": sub.consent_at,
                          **json.loads(sub.attributes)}  # fmt: skip
            arguments = {
                "ContactListName": self.contact_list,
                "EmailAddress": sub.email,
                "TopicPreferences": [
                    {"TopicName": name, "SubscriptionStatus": status}
                    for name, status in sorted(preferences.items())
                ],
                "UnsubscribeAll": bool(known.get("UnsubscribeAll")),
                "AttributesData": json.dumps(attributes, ensure_ascii=False),
            }
            self._call("update_contact" if known else "create_contact", **arguments)
            added += not known
        return added

    def remove(self, email: str, now: datetime) -> bool:
        """Unsubscribe the contact from every topic."""
        try:
            self._call("get_contact", ContactListName=self.contact_list, EmailAddress=email)
        except BuzzError as exc:
            if "NotFoundException" in str(exc):
                return False
            raise
        self._call("update_contact", ContactListName=self.contact_list, EmailAddress=email,
                   UnsubscribeAll=True)  # fmt: skip
        return True

    def members(self, lang: str | None) -> list[Subscriber]:
        """Every contact (its consent record from its attributes, where buzz imported it)."""
        members = []
        for contact in self._contacts():
            detail = self._call("get_contact", ContactListName=self.contact_list,
                                EmailAddress=contact["EmailAddress"])  # fmt: skip
            attributes = json.loads(detail.get("AttributesData") or "{}")
            member_lang = attributes.get("language", "")
            if lang and member_lang != lang:
                continue
            members.append(Subscriber(
                email=contact["EmailAddress"], lang=member_lang,
                consent_source=attributes.get("consent_source", ""),
                consent_at=attributes.get("consent_at", ""), name=attributes.get("name", ""),
                unsubscribed_at=None
                if member_lang in self.topics
                and self._opted_in(contact, self.topics[member_lang])
                else "(unsubscribed)",
            ))  # fmt: skip
        return members
