"""A name resolver for the guarded outbound clients: names resolve to what the test says
(anything else is unknown, as the system resolver would say), and every lookup is counted."""

from __future__ import annotations

import socket


class FakeResolver:
    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = dict(answers or {})
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]
