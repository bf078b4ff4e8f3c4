from __future__ import annotations

import pytest

from viarah.domain.shared.errors import InvalidInput
from viarah.domain.shared.text import clean_text, loggable, normalize_email, storable


@pytest.mark.parametrize(
    ("value", "ok"),
    [("plain", True), ("é ü 中", True), ("a\x00b", False), ("a\nb", False), ("\ud800", False)],
)
def test_storable(value: str, ok: bool) -> None:
    assert storable(value) is ok


def test_loggable_escapes_what_could_forge_a_line() -> None:
    assert loggable("/api/orgs/x") == "/api/orgs/x"
    forged = loggable("/a\r\nINFO viarah.web: forged=yes\x00")
    assert "\n" not in forged
    assert "\r" not in forged
    assert "\x00" not in forged
    assert "forged=yes" in forged
    assert len(loggable("x" * 1000)) == 300


@pytest.mark.parametrize("email", ["a\x00@example.com", "a@exa\ud800mple.com"])
def test_emails_with_control_characters_are_invalid(email: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_email(email)


def test_clean_text_refuses_surrogates() -> None:
    with pytest.raises(InvalidInput):
        clean_text("name", "a\ud800", max_length=10)
