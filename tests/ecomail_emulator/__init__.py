"""A faithful local Ecomail API for tests and manual runs (quirks: ecomail-api.md §9).

    emu = Emulator(rate_limit=1000, rate_window=60.0)
    account = emu.add_account("key-a")
    list_id = account.add_list("Newsletter", double_optin=False, webhook_url=None)
    with EmulatorServer(emu) as server:
        ...  # point the client at server.url with the header ``key: key-a``

Change a list behind the client's back with the ``Emulator``'s controls (``edit_field``,
``unsubscribe``, ``set_status``, ``delete_member``, ``confirm_double_optin``, ``add_member``,
``seed_members``; also over HTTP under ``/_emulator``, see ``control_app``).
Inspect ``account.lists[list_id].members``, ``account.events``, ``emu.requests``,
``emu.webhook_calls``; inject failures with ``emu.faults`` (see ``Faults``): answered before
the request is processed (``fail_next``, ``fail_always``, ``rate_limit_next``, ``delay``), or
after it was processed and its webhooks sent, so the change happens but the client never
learns it (``lose_answer_next``: a 500 or other status instead of the answer;
``answer_late_next``: the answer after a wait longer than the client's timeout). Where the
docs are silent the emulator picks a behaviour and says so in a comment marked "assumption"
or "unconfirmed".
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
