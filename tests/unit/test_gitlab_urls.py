from __future__ import annotations

import pytest

from viarah.domain.gitlab.urls import ObjectKind, normalize_base_url, parse_gitlab_url
from viarah.domain.shared.errors import InvalidInput

ORIGIN = "https://gitlab.example.com"


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://gitlab.example.com", ORIGIN),
        ("https://GitLab.Example.COM/", ORIGIN),
        ("HTTPS://gitlab.example.com:443", ORIGIN),
        ("  https://gitlab.example.com  ", ORIGIN),
        ("http://gitlab.local:8080", "http://gitlab.local:8080"),
        ("http://gitlab.local:80/", "http://gitlab.local"),
        ("https://10.0.0.5:8443", "https://10.0.0.5:8443"),
        ("http://[::1]:8929", "http://[::1]:8929"),
    ],
)
def test_base_url_is_normalised_to_an_origin(raw: str, origin: str) -> None:
    assert normalize_base_url(raw) == origin


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "gitlab.example.com",
        "ftp://gitlab.example.com",
        "https://user:pass@gitlab.example.com",
        "https://token@gitlab.example.com",
        "https://gitlab.example.com/gitlab",
        "https://gitlab.example.com/?x=1",
        "https://gitlab.example.com/#top",
        "https://gitlab.example.com:99999",
        "https://",
        "https://bad_host!.com",
        "javascript:alert(1)",
    ],
)
def test_bad_base_urls_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_base_url(raw)
    assert info.value.field == "base_url"


@pytest.mark.parametrize(
    ("url", "path", "kind", "iid", "canonical"),
    [
        (f"{ORIGIN}/g/p/-/issues/12", "g/p", ObjectKind.ISSUE, 12, f"{ORIGIN}/g/p/-/issues/12"),
        (f"{ORIGIN}/g/sub/deeper/p/-/issues/3/", "g/sub/deeper/p", ObjectKind.ISSUE, 3, None),
        (f"{ORIGIN}/g/p/-/issues/12#note_991", "g/p", ObjectKind.ISSUE, 12, None),
        (f"{ORIGIN}/g/p/-/issues/12?scope=all&x=1", "g/p", ObjectKind.ISSUE, 12, None),
        (
            f"{ORIGIN}/g/p/-/merge_requests/7",
            "g/p",
            ObjectKind.MR,
            7,
            f"{ORIGIN}/g/p/-/merge_requests/7",
        ),
        (f"{ORIGIN}/g/p/-/merge_requests/7/diffs", "g/p", ObjectKind.MR, 7, None),
        ("https://GITLAB.example.com:443/G/P.js/-/issues/1", "G/P.js", ObjectKind.ISSUE, 1, None),
        (
            f"{ORIGIN}/user-name/my_project/-/issues/99999",
            "user-name/my_project",
            ObjectKind.ISSUE,
            99999,
            None,
        ),
    ],
)
def test_valid_issue_and_mr_urls(
    url: str, path: str, kind: ObjectKind, iid: int, canonical: str | None
) -> None:
    ref = parse_gitlab_url(url, expected_origin=ORIGIN)
    assert (ref.project_path, ref.kind, ref.iid) == (path, kind, iid)
    assert ref.origin == ORIGIN
    if canonical:
        assert ref.web_url == canonical
    assert "?" not in ref.web_url
    assert "#" not in ref.web_url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("g/p/-/issues/1", "absolute"),
        ("https://other.example.com/g/p/-/issues/1", "this organization's GitLab"),
        ("http://gitlab.example.com/g/p/-/issues/1", "this organization's GitLab"),
        ("https://gitlab.example.com:8443/g/p/-/issues/1", "this organization's GitLab"),
        ("https://user@gitlab.example.com/g/p/-/issues/1", "credentials"),
        (f"{ORIGIN}/g/p/issues/1", "no /-/"),
        (f"{ORIGIN}/p/-/issues/1", "group"),
        (f"{ORIGIN}/g/p/-/pipelines/1", "issue"),
        (f"{ORIGIN}/g/p/-/issues", "issue"),
        (f"{ORIGIN}/g/p/-/issues/abc", "positive"),
        (f"{ORIGIN}/g/p/-/issues/0", "positive"),
        (f"{ORIGIN}/g/p/-/issues/-3", "positive"),
        (f"{ORIGIN}/g/p/-/issues/12345678901", "positive"),
        (f"{ORIGIN}/g/p/-/issues/1/edit/more", "unexpected"),
        (f"{ORIGIN}/g/p/-/issues/1/related", "unexpected"),
        (f"{ORIGIN}/g/../p/-/issues/1", "invalid project"),
        (f"{ORIGIN}/g/p%2F..%2Fx/-/issues/1", "invalid project"),
        (f"{ORIGIN}/g/p q/-/issues/1", "invalid project"),
        (f"{ORIGIN}/g/p/-/issues/" + "1" * 3000, "at most"),
        (f"{ORIGIN}/g/p/-/issues/١٢", "positive"),
        (f"{ORIGIN}/g/p/-/issues/2147483648", "positive"),
        (f"{ORIGIN}/{'g/' * 300}p/-/issues/1", "over 500"),
    ],
)
def test_invalid_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_gitlab_url(url, expected_origin=ORIGIN)
    assert info.value.field == "url"
    assert why in info.value.reason


def test_same_object_has_the_same_key_whatever_the_spelling() -> None:
    a = parse_gitlab_url(f"{ORIGIN}/Group/Proj/-/issues/5/", expected_origin=ORIGIN)
    b = parse_gitlab_url(f"{ORIGIN}/group/proj/-/issues/5#note_1", expected_origin=ORIGIN)
    assert a.key == b.key
