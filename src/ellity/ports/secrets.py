"""Encryption of secrets kept at rest (SMTP and Ecomail credentials)."""

from __future__ import annotations

from typing import Protocol


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted (the secret key changed or the value is damaged)."""


class SecretBox(Protocol):
    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, ciphertext: str) -> str:
        """Raises ``SecretUnreadable``."""
        ...
