"""VAPID key helpers: generation, derivation, pair checks and malformed input (no I/O)."""

from __future__ import annotations

import base64

import pytest

from viarah.adapters.crypto.vapid import (
    VapidKeyError,
    derive_vapid_public_key,
    generate_vapid_keypair,
    load_vapid_private_key,
    load_vapid_public_key,
    validate_vapid_keypair,
    vapid_keys_match,
)


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_generated_pair_is_base64url_without_padding_and_matches() -> None:
    pair = generate_vapid_keypair()

    assert "=" not in pair.public_key
    assert "=" not in pair.private_key
    assert len(_decode(pair.public_key)) == 65
    assert _decode(pair.public_key)[0] == 0x04
    assert len(_decode(pair.private_key)) == 32
    assert derive_vapid_public_key(pair.private_key) == pair.public_key
    assert vapid_keys_match(pair.public_key, pair.private_key)
    validate_vapid_keypair(pair.public_key, pair.private_key)


def test_two_generated_pairs_differ() -> None:
    first, second = generate_vapid_keypair(), generate_vapid_keypair()
    assert first.private_key != second.private_key
    assert first.public_key != second.public_key


def test_a_padded_key_is_accepted() -> None:
    pair = generate_vapid_keypair()
    padded = pair.public_key + "=" * (-len(pair.public_key) % 4)
    assert vapid_keys_match(padded, pair.private_key)


def test_a_mismatched_pair_is_detected_without_showing_a_key() -> None:
    mine, theirs = generate_vapid_keypair(), generate_vapid_keypair()

    assert not vapid_keys_match(theirs.public_key, mine.private_key)
    with pytest.raises(VapidKeyError, match="does not belong") as caught:
        validate_vapid_keypair(theirs.public_key, mine.private_key)
    assert mine.private_key not in str(caught.value)
    assert theirs.public_key not in str(caught.value)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not base64!",
        "a+b/c==",  # standard base64, not base64url
        "abcde",  # truncated (length 1 mod 4)
        base64.urlsafe_b64encode(b"\x01" * 31).decode().rstrip("="),  # 31 bytes
        base64.urlsafe_b64encode(b"\x00" * 32).decode().rstrip("="),  # zero scalar
        base64.urlsafe_b64encode(b"\xff" * 32).decode().rstrip("="),  # above the group order
    ],
)
def test_a_bad_private_key_is_detected(bad: str) -> None:
    with pytest.raises(VapidKeyError, match="WEBPUSH_VAPID_PRIVATE_KEY") as caught:
        load_vapid_private_key(bad)
    assert isinstance(caught.value, ValueError)
    if bad:
        assert bad not in str(caught.value)


def test_stray_characters_are_not_silently_dropped() -> None:
    pair = generate_vapid_keypair()
    damaged = pair.private_key[:10] + "*" + pair.private_key[10:]
    with pytest.raises(VapidKeyError):
        derive_vapid_public_key(damaged)


@pytest.mark.parametrize(
    "bad",
    [
        "%%%",
        base64.urlsafe_b64encode(b"\x04" + b"\x01" * 63).decode(),  # 64 bytes
        base64.urlsafe_b64encode(b"\x02" + b"\x01" * 64).decode(),  # not uncompressed
        base64.urlsafe_b64encode(b"\x04" + b"\x01" * 64).decode(),  # not on the curve
    ],
)
def test_a_bad_public_key_is_detected(bad: str) -> None:
    with pytest.raises(VapidKeyError, match="WEBPUSH_VAPID_PUBLIC_KEY"):
        load_vapid_public_key(bad)
    with pytest.raises(VapidKeyError, match="WEBPUSH_VAPID_PUBLIC_KEY"):
        vapid_keys_match(bad, generate_vapid_keypair().private_key)
