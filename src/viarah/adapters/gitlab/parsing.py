"""GitLab's JSON (REST API v4) and headers, read into the domain's values.

Anything that is not the shape GitLab sends raises ``GitLabCallFailed("bad_response")``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from viarah.domain.gitlab.client import (
    Assignee,
    GitLabCallFailed,
    GitLabObject,
    GitLabUser,
    TokenInfo,
)
from viarah.domain.gitlab.urls import GitLabRef

MAX_RETRY_AFTER_SECONDS = 86400.0
"""A server asking for more than a day of silence is capped at a day."""


def _bad(what: str, why: str) -> GitLabCallFailed:
    return GitLabCallFailed("bad_response", f"GitLab's answer for {what} {why}")


def _text(data: dict[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _bad(what, f"has no text field {key!r}")
    return value


def _mapping(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _bad(what, "is not a JSON object")
    return data


def _labels(raw: Any, what: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _bad(what, "has 'labels' that is not a list")
    labels: list[str] = []
    for item in raw:
        if isinstance(item, str):
            labels.append(item)
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            labels.append(item["name"])  # ?with_labels_details=true
        else:
            raise _bad(what, "has a label that is neither a name nor a label object")
    return tuple(labels)


def _assignee(raw: Any, what: str) -> Assignee:
    if not isinstance(raw, dict) or not isinstance(raw.get("username"), str):
        raise _bad(what, "has an assignee without a username")
    name = raw.get("name")
    return Assignee(username=raw["username"], name=name if isinstance(name, str) else "")


def _assignees(data: dict[str, Any], what: str) -> tuple[Assignee, ...]:
    raw = data.get("assignees")
    if raw is None:  # older GitLab, or objects with a single assignee
        single = data.get("assignee")
        return () if single is None else (_assignee(single, what),)
    if not isinstance(raw, list):
        raise _bad(what, "has 'assignees' that is not a list")
    return tuple(_assignee(item, what) for item in raw)


def parse_timestamp(raw: Any, what: str) -> datetime | None:
    """An ISO 8601 timestamp (``2024-05-01T10:00:00.123Z``) as an aware UTC datetime."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _bad(what, "has a timestamp that is not text")
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise _bad(what, f"has a timestamp that is not ISO 8601 ({raw[:40]!r})") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_object(data: Any, ref: GitLabRef) -> GitLabObject:
    """``GET /projects/:id/issues/:iid`` or ``/merge_requests/:iid``."""
    what = f"{ref.project_path} {ref.kind.value} {ref.iid}"
    body = _mapping(data, what)
    state = _text(body, "state", what)
    if not state:
        raise _bad(what, "has an empty state")
    web_url = body.get("web_url")
    return GitLabObject(
        title=_text(body, "title", what),
        state=state,
        labels=_labels(body.get("labels"), what),
        assignees=_assignees(body, what),
        web_url=web_url if isinstance(web_url, str) and web_url else ref.web_url,
        updated_at=parse_timestamp(body.get("updated_at"), what),
    )


def parse_user(data: Any) -> GitLabUser:
    """``GET /user``."""
    body = _mapping(data, "the current user")
    username = _text(body, "username", "the current user")
    if not username:
        raise _bad("the current user", "has an empty username")
    return GitLabUser(username=username)


def parse_token_info(data: Any) -> TokenInfo:
    """``GET /personal_access_tokens/self``: scopes, and the expiry date or ``None``."""
    what = "the token"
    body = _mapping(data, what)
    scopes = body.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise _bad(what, "has 'scopes' that is not a list of names")
    raw_expiry = body.get("expires_at")
    expires_at: date | None = None
    if raw_expiry is not None:
        if not isinstance(raw_expiry, str):
            raise _bad(what, "has an 'expires_at' that is not a date")
        try:
            expires_at = date.fromisoformat(raw_expiry.strip()[:10])
        except ValueError:
            raise _bad(
                what, f"has an 'expires_at' that is not a date ({raw_expiry[:40]!r})"
            ) from None
    return TokenInfo(scopes=tuple(scopes), expires_at=expires_at)


def parse_retry_after(
    retry_after: str | None, ratelimit_reset: str | None, now: datetime
) -> float | None:
    """Seconds to wait after a 429.

    ``Retry-After`` is delay-seconds or an HTTP-date (RFC 9110 §10.2.3); without it,
    GitLab's ``RateLimit-Reset`` (a Unix time) is used. ``None`` when neither is usable.
    Never negative, never more than :data:`MAX_RETRY_AFTER_SECONDS`.
    """
    seconds: float | None = None
    if retry_after is not None and retry_after.strip():
        value = retry_after.strip()
        try:
            seconds = float(value)
        except ValueError:
            seconds = _seconds_until_http_date(value, now)
        if seconds is not None and seconds != seconds:  # NaN
            seconds = None
    if seconds is None and ratelimit_reset is not None:
        try:
            seconds = float(ratelimit_reset.strip()) - now.timestamp()
        except ValueError:
            seconds = None
    if seconds is None:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _seconds_until_http_date(value: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()
