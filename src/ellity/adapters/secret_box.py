"""Secrets encrypted with Fernet (AES-128-CBC + HMAC-SHA256), keyed from ELLITY_SECRET_KEY."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from ellity.ports.secrets import SecretUnreadable


class FernetSecretBox:
    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"ellity secrets at rest\0" + secret_key.encode("utf-8")).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError, UnicodeError):
            raise SecretUnreadable("the stored secret cannot be decrypted") from None

    def __repr__(self) -> str:
        return "FernetSecretBox(<key hidden>)"
