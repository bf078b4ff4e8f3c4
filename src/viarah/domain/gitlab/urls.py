"""GitLab URLs: the integration's origin, and issue / merge request web URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from viarah.domain.shared.errors import InvalidInput

MAX_URL_LENGTH = 2048
MAX_PROJECT_PATH_LENGTH = 500
#: GitLab iids are positive 32-bit integers.
MAX_IID = 2**31 - 1
_SEGMENT = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-+]*$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9\-.]*[A-Za-z0-9])?)$")


class ObjectKind(StrEnum):
    ISSUE = "issue"
    MR = "mr"

    @property
    def api_collection(self) -> str:
        return "issues" if self is ObjectKind.ISSUE else "merge_requests"


@dataclass(frozen=True, slots=True)
class GitLabRef:
    """One issue or merge request: where it lives and its per-project number."""

    origin: str
    project_path: str
    kind: ObjectKind
    iid: int

    @property
    def web_url(self) -> str:
        """The canonical web URL (no trailing slash, query or fragment)."""
        return f"{self.origin}/{self.project_path}/-/{self.kind.api_collection}/{self.iid}"

    @property
    def key(self) -> tuple[str, str, int]:
        """Identity of the GitLab object within one origin."""
        return (self.project_path.lower(), self.kind.value, self.iid)


def normalize_base_url(raw: str) -> str:
    """An http(s) origin such as ``https://gitlab.example.com`` or ``http://host:8080``.

    Refuses credentials, paths (other than ``/``), queries and fragments, so that the
    stored value is exactly the origin every link URL must match.
    """
    value = raw.strip()
    if not value or len(value) > MAX_URL_LENGTH:
        raise InvalidInput(
            "base_url", "must be the URL of your GitLab, e.g. https://gitlab.example.com"
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidInput("base_url", "is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("base_url", "must start with https:// or http://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidInput("base_url", "must not contain credentials")
    if parts.path not in ("", "/"):
        raise InvalidInput(
            "base_url", "must be an origin without a path (e.g. https://gitlab.example.com)"
        )
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise InvalidInput("base_url", "must not contain a query or fragment")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host or not _HOST.match(host if ":" not in host else f"[{host}]"):
        raise InvalidInput("base_url", "has no valid host name")
    scheme = parts.scheme.lower()
    default_port = 443 if scheme == "https" else 80
    shown_host = f"[{host}]" if ":" in host else host
    netloc = shown_host if port in (None, default_port) else f"{shown_host}:{port}"
    return f"{scheme}://{netloc}"


def parse_gitlab_url(url: str, *, expected_origin: str) -> GitLabRef:
    """Parse an issue or MR web URL on ``expected_origin`` (field name ``url`` in errors).

    Accepts nested groups, a trailing slash, query strings and ``#note_…`` fragments;
    sub-pages such as ``/diffs`` of a merge request are accepted and canonicalised.
    """
    value = url.strip()
    if not value:
        raise InvalidInput("url", "must not be empty")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidInput("url", f"must be at most {MAX_URL_LENGTH} characters")
    try:
        origin = normalize_base_url(_origin_part(value))
    except InvalidInput as exc:
        raise InvalidInput("url", exc.reason) from None
    if origin != expected_origin:
        raise InvalidInput("url", f"must be on this organization's GitLab ({expected_origin})")
    path = unquote(urlsplit(value).path)
    segments = [s for s in path.split("/") if s]
    if "-" not in segments:
        raise InvalidInput("url", "is not a GitLab issue or merge request URL (no /-/ part)")
    dash = segments.index("-")
    project, rest = segments[:dash], segments[dash + 1 :]
    if len(project) < 2:
        raise InvalidInput("url", "must name a project inside a group or user namespace")
    if any(not _SEGMENT.match(s) or s in (".", "..") for s in project):
        raise InvalidInput("url", "has an invalid project path")
    if len("/".join(project)) > MAX_PROJECT_PATH_LENGTH:
        raise InvalidInput("url", f"has a project path over {MAX_PROJECT_PATH_LENGTH} characters")
    if len(rest) < 2 or rest[0] not in ("issues", "merge_requests"):
        raise InvalidInput(
            "url", "must point at an issue (/-/issues/N) or merge request (/-/merge_requests/N)"
        )
    kind = ObjectKind.ISSUE if rest[0] == "issues" else ObjectKind.MR
    if len(rest) > 2 and not (kind is ObjectKind.MR and len(rest) == 3):
        raise InvalidInput("url", "has unexpected parts after the issue or merge request number")
    number = rest[1]
    if not number.isdigit() or not number.isascii() or not 1 <= int(number[:11]) <= MAX_IID:
        raise InvalidInput("url", "must end with a positive issue or merge request number")
    return GitLabRef(origin=origin, project_path="/".join(project), kind=kind, iid=int(number))


def _origin_part(value: str) -> str:
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        raise InvalidInput("url", "must be an absolute http(s) URL")
    return f"{parts.scheme}://{parts.netloc}"
