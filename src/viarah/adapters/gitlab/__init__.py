"""GitLab REST API v4 over guarded HTTP/1.1: the ``GitLabClient`` port's real implementation."""

from viarah.adapters.gitlab.http import Http11GitLabClient, HttpAnswer, HttpRequests

__all__ = ["Http11GitLabClient", "HttpAnswer", "HttpRequests"]
