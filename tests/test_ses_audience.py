"""The SES contact-list audience against moto's real HTTP endpoint: import, list, unsubscribe,
and a run whose messages name their list and topic."""

from __future__ import annotations

import email
import email.policy
import json
import urllib.request
from pathlib import Path

import boto3
import pytest

from pipeline.models import Recipient
from pipeline.transport import SesTransport
from tests.conftest import Buzz
from tests.ses_standin import SesStandIn

UNSUBSCRIBED = "mathieu.belanger@example.com"


@pytest.fixture
def ses_demo(demo: Path, ses_env: str) -> dict[str, str]:
    """The demo configured for an SES contact list and SES sending, on moto."""
    client = boto3.client("sesv2", region_name="ca-central-1")
    client.create_email_identity(EmailIdentity="news.example.com")
    client.create_contact_list(
        ContactListName="it-buzz",
        Topics=[
            {"TopicName": t, "DisplayName": t, "DefaultSubscriptionStatus": "OPT_OUT"}
            for t in ("it-buzz-en", "it-buzz-fr")
        ],
    )
    config = demo / "buzz.toml"
    text = config.read_text()
    text = text.replace('source = "local"', 'source = "ses"\nses_api_rate = 50')
    text = text.replace('transport = "outbox"', 'transport = "ses"')
    text = text.replace("max_send_rate = 0", "max_send_rate = 50")
    config.write_text(text)
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_SESV2": ses_env,
    }


def test_contacts_are_imported_listed_and_unsubscribed(
    buzz: Buzz, ses_demo: dict[str, str]
) -> None:
    """Import creates contacts with topic preferences and consent; unsubscribe opts out of all."""
    imported = buzz("subscribers", "import", "demo/subscribers.csv", env=ses_demo)
    assert imported.returncode == 0, imported.stderr
    assert "10 new" in imported.stdout
    listed = buzz("subscribers", "list", env=ses_demo).stdout.splitlines()
    assert len(listed) == 10
    assert sum("unsubscribed" in line for line in listed) == 1
    assert all("website signup form" in line or "\tfr\t" in line or "event" in line or
               "webinar" in line for line in listed)  # fmt: skip
    gone = buzz("subscribers", "unsubscribe", "chloe.gagne@example.net", env=ses_demo)
    assert gone.returncode == 0, gone.stderr
    contact = boto3.client("sesv2", region_name="ca-central-1").get_contact(
        ContactListName="it-buzz", EmailAddress="chloe.gagne@example.net"
    )
    assert contact["UnsubscribeAll"] is True
    assert buzz("subscribers", "unsubscribe", "nobody@example.com", env=ses_demo).returncode == 2


def test_a_run_sends_to_opted_in_contacts_only(
    buzz: Buzz, ses_demo: dict[str, str], ses_env: str
) -> None:
    """buzz filters opted-out contacts itself (moto ignores ListContacts' filter); the body
    carries SES's unsubscribe placeholder and buzz adds no List-Unsubscribe of its own."""
    assert buzz("subscribers", "import", "demo/subscribers.csv", env=ses_demo).returncode == 0
    result = buzz("run", env=ses_demo)
    assert result.returncode == 0, result.stderr
    data = json.load(urllib.request.urlopen(f"{ses_env}/moto-api/data.json"))
    sent = data["ses"]["RawMessage"]
    recipients = sorted(m["destinations"][0] for m in sent)
    assert len(recipients) == 9
    assert UNSUBSCRIBED not in recipients
    french = {"genevieve.tremblay@example.com", "jean-francois.cote@example.net",
              "marie-eve.lapointe@example.org", "chloe.gagne@example.net"}  # fmt: skip
    for message in sent:
        parsed = email.message_from_string(message["raw_data"], policy=email.policy.default)
        is_french = message["destinations"][0] in french
        assert parsed["Subject"].startswith("Le buzz IT" if is_french else "IT Buzz")
    raw = sent[0]["raw_data"]
    assert "{{amazonSESUnsubscribeUrl}}" in raw
    assert "List-Unsubscribe:" not in raw
    assert "List-Id:" in raw


def test_messages_name_their_list_and_topic() -> None:
    """With a contact list, SendEmail carries ListManagementOptions for the recipient's topic."""
    with SesStandIn(max_send_rate=100) as ses:
        transport = SesTransport("ca-central-1", list_management={"fr": ("it-buzz", "it-buzz-fr")})
        transport.client = boto3.client(
            "sesv2", region_name="ca-central-1", endpoint_url=ses.url,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        transport.send(Recipient("a@example.com", "fr"), b"From: x@news.example.com\r\n\r\nhi")
        [message] = ses.messages
    assert message.list_management == {"ContactListName": "it-buzz", "TopicName": "it-buzz-fr"}
