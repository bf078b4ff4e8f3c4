"""Encryption of stored secrets (MultiFernet) and keyed digests (HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from viarah.domain.shared.secrets import SecretUndecryptable


class InvalidEncryptionKey(ValueError):
    """A configured key is not a Fernet key; the message says which one (by position)."""


def parse_fernet_keys(keys: tuple[str, ...]) -> list[Fernet]:
    """Fernet objects for ``keys`` (newest first); InvalidEncryptionKey names the bad one."""
    parsed = []
    for position, key in enumerate(keys, start=1):
        try:
            parsed.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            raise InvalidEncryptionKey(
                f"VIA_RAH_ENCRYPTION_KEY: key #{position} is not a valid Fernet key "
                "(32 url-safe base64 bytes; generate one with 'viarah keys fernet')"
            ) from None
    return parsed


class FernetSecretBox:
    """Encrypts with the first key; decrypts with any (so old ciphertexts keep working)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        fernets = parse_fernet_keys(keys)
        self._multi = MultiFernet(fernets) if fernets else None
        self._newest = fernets[0] if fernets else None

    @property
    def available(self) -> bool:
        return self._multi is not None

    def _require(self) -> MultiFernet:
        if self._multi is None:
            raise SecretUndecryptable("VIA_RAH_ENCRYPTION_KEY is not set")
        return self._multi

    def encrypt(self, plaintext: str) -> str:
        return self._require().encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._require().decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretUndecryptable("no configured key decrypts this value") from None

    def rotate(self, ciphertext: str) -> str:
        try:
            return self._require().rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretUndecryptable("no configured key decrypts this value") from None

    def is_current(self, ciphertext: str) -> bool:
        """True when the newest key already decrypts ``ciphertext`` (nothing to rotate)."""
        if self._newest is None:
            return False
        try:
            self._newest.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True


class HmacKeyedHasher:
    """HMAC-SHA256 keyed with the server secret: a leaked table reveals no webhook secret."""

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(b"viarah-keyed-digest:" + secret_key.encode()).digest()

    def digest(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def matches(self, value: str, digest: str) -> bool:
        return hmac.compare_digest(self.digest(value), digest)
