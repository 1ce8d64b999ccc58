"""A faithful local Ecomail API for tests and manual runs (quirks: ecomail-api.md §9).

    emu = Emulator(rate_limit=1000, rate_window=60.0)
    account = emu.add_account("key-a")
    list_id = account.add_list("Newsletter", double_optin=False, webhook_url=None)
    with EmulatorServer(emu) as server:
        ...  # point the client at server.url with the header ``key: key-a``

Inspect ``account.lists[list_id].members``, ``account.events``, ``emu.requests``,
``emu.webhook_calls``; inject failures with ``emu.faults``. Where the docs are silent the
emulator picks a behaviour and says so in a comment marked "assumption" or "unconfirmed".
"""

from tests.ecomail_emulator.emulator import Emulator, RequestRecord
from tests.ecomail_emulator.faults import Faults
from tests.ecomail_emulator.model import Account, Contact, MailingList, Member
from tests.ecomail_emulator.server import EmulatorServer, ThreadedServer
from tests.ecomail_emulator.webhooks import WebhookCall

__all__ = [
    "Account",
    "Contact",
    "Emulator",
    "EmulatorServer",
    "Faults",
    "MailingList",
    "Member",
    "RequestRecord",
    "ThreadedServer",
    "WebhookCall",
]
