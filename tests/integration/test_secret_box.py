"""Secrets at rest: encrypted, unreadable with another key, never shown by repr."""

from __future__ import annotations

import pytest

from ellity.adapters.secret_box import FernetSecretBox
from ellity.ports.secrets import SecretUnreadable


def test_a_secret_comes_back_only_with_the_same_key() -> None:
    box = FernetSecretBox("key one")
    sealed = box.encrypt("smtp-pässword")
    assert "smtp" not in sealed and sealed != box.encrypt("smtp-pässword")
    assert box.decrypt(sealed) == "smtp-pässword"
    with pytest.raises(SecretUnreadable):
        FernetSecretBox("key two").decrypt(sealed)
    with pytest.raises(SecretUnreadable):
        box.decrypt("not a token")


def test_the_key_never_appears_in_repr() -> None:
    assert "key one" not in repr(FernetSecretBox("key one"))
