"""GitLab REST API v4 over httpx: the ``GitLabClient`` port's real implementation."""

from viarah.adapters.gitlab.http import AsyncClientSource, HttpxGitLabClient

__all__ = ["AsyncClientSource", "HttpxGitLabClient"]
