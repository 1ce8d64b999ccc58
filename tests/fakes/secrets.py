"""A readable stand-in for the encryption of secrets at rest."""

from __future__ import annotations

from ellity.ports.secrets import SecretBox, SecretUnreadable


class FakeSecretBox(SecretBox):
    """Reversible and readable in tests; not a cipher. Refuses what it did not produce."""

    PREFIX = "sealed:"

    def encrypt(self, plaintext: str) -> str:
        return self.PREFIX + plaintext[::-1]

    def decrypt(self, ciphertext: str) -> str:
        if not ciphertext.startswith(self.PREFIX):
            raise SecretUnreadable("not sealed by this box")
        return ciphertext.removeprefix(self.PREFIX)[::-1]
