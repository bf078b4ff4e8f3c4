"""Ports for secrets the domain stores: encrypted (tokens) or only ever compared (digests)."""

from __future__ import annotations

from typing import Protocol


class SecretUndecryptable(Exception):
    """No configured key decrypts this ciphertext (wrong or missing key)."""


class SecretBox(Protocol):
    """Symmetric encryption of stored secrets (Fernet, keys newest first)."""

    @property
    def available(self) -> bool:
        """False when no encryption key is configured."""
        ...

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, ciphertext: str) -> str:
        """Plaintext; SecretUndecryptable when no key fits."""
        ...

    def rotate(self, ciphertext: str) -> str:
        """The same secret encrypted under the newest key."""
        ...

    def is_current(self, ciphertext: str) -> bool:
        """True when the newest key decrypts ``ciphertext`` (nothing to rotate)."""
        ...


class KeyedHasher(Protocol):
    """A keyed digest (HMAC with the server secret) for secrets only ever compared."""

    def digest(self, value: str) -> str: ...

    def matches(self, value: str, digest: str) -> bool:
        """Constant-time comparison of ``value``'s digest with ``digest``."""
        ...
