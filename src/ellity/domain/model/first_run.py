"""The first-run checklist: the five steps that make a new programme work, in their order.

Each step is done on a fact Ellity keeps, never on something it cannot see: the webhook URL
lives in Ecomail's list settings, so that step is done once Ecomail's first notification has
arrived. The checklist is shown while any step is to do and goes away when all are done.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SetupStep(StrEnum):
    SHOP_ADDRESS = "shop_address"
    API_TOKEN = "api_token"
    ECOMAIL = "ecomail"
    WEBHOOK = "webhook"
    TEST_EMAIL = "test_email"


@dataclass(frozen=True, slots=True)
class SetupFacts:
    """What storage knows about the merchant's setup, read in one go."""

    api_token: bool  # an API token that is not revoked exists
    ecomail_active: bool
    notification_received: bool  # Ecomail's list webhook posted at least once
    test_email_sent: bool  # a test email went out through the merchant's SMTP account


@dataclass(frozen=True, slots=True)
class Checklist:
    """The steps in order, each with whether it is done."""

    steps: tuple[tuple[SetupStep, bool], ...]

    @property
    def complete(self) -> bool:
        return all(done for _, done in self.steps)

    @property
    def done(self) -> int:
        return sum(1 for _, done in self.steps if done)


def checklist(*, shop_url: str, facts: SetupFacts) -> Checklist:
    return Checklist(
        (
            (SetupStep.SHOP_ADDRESS, bool(shop_url)),
            (SetupStep.API_TOKEN, facts.api_token),
            (SetupStep.ECOMAIL, facts.ecomail_active),
            (SetupStep.WEBHOOK, facts.notification_received),
            (SetupStep.TEST_EMAIL, facts.test_email_sent),
        )
    )
