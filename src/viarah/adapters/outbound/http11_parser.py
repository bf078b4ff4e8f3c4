"""Reading HTTP/1.1 answers incrementally (for :mod:`.http11`): status line, headers,
``Content-Length``, ``chunked`` (with extensions and trailers) and connection-delimited
bodies, interim 1xx answers skipped, the body capped, every size bounded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

MAX_HEAD_BYTES = 64 * 1024  # status line + headers (and chunk trailers)
MAX_LINE_BYTES = 8 * 1024  # one chunk-size line
_KEEP_ALIVE_TIMEOUT = re.compile(r"timeout\s*=\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Http11Answer:
    """One response: ``headers`` has lower-case names (repeated fields joined by ", ");
    ``body`` is at most the client's ``max_body`` bytes (``truncated`` when cut)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    truncated: bool = False


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class ResponseParser:
    """Incremental HTTP/1.1 response parser: :meth:`feed` bytes until it returns True."""

    __slots__ = (
        "_body",
        "_buf",
        "_extra",
        "_head_only",
        "_max_body",
        "_remaining",
        "headers",
        "keep_alive",
        "keep_alive_timeout",
        "reason",
        "state",
        "status",
        "truncated",
    )

    def __init__(self, method: str, max_body: int) -> None:
        self._buf = bytearray()
        self._body = bytearray()
        self._head_only = method == "HEAD"
        self._max_body = max_body
        self._remaining = 0
        self._extra = 0  # trailer bytes seen
        self.state = _HEAD
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self.keep_alive_timeout: int | None = None
        self.truncated = False

    def answer(self) -> Http11Answer:
        return Http11Answer(
            self.status, self.reason, self.headers, bytes(self._body), self.truncated
        )

    def feed(self, data: bytes) -> bool:
        """Consume ``data``; True when the answer is complete. Raises
        ``httpx.RemoteProtocolError`` on a malformed answer."""
        buf = self._buf
        buf += data
        while True:
            state = self.state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise httpx.RemoteProtocolError("response head too large")
                    return False
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._parse_head(head)
            elif state == _LENGTH:
                take = min(len(buf), self._remaining)
                if take:
                    if not self._keep(buf, take):
                        return True
                    self._remaining -= take
                if self._remaining:
                    return False
                return self._finish()
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_LINE_BYTES:
                        raise httpx.RemoteProtocolError("chunk size line too long")
                    return False
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                if not line or len(line) > 16 or line.strip(b"0123456789abcdefABCDEF"):
                    raise httpx.RemoteProtocolError("malformed chunk size")
                size = int(line, 16)
                if size == 0:
                    self.state = _TRAILERS
                else:
                    self._remaining = size
                    self.state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                take = min(len(buf), self._remaining)
                if not take:
                    return False
                if not self._keep(buf, take):
                    return True
                self._remaining -= take
                if self._remaining == 0:
                    self.state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    return False
                if buf[:2] != b"\r\n":
                    raise httpx.RemoteProtocolError("chunk not followed by CRLF")
                del buf[:2]
                self.state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    if self._extra + len(buf) > MAX_HEAD_BYTES:
                        raise httpx.RemoteProtocolError("chunked trailers too large")
                    return False
                self._extra += end + 2
                if self._extra > MAX_HEAD_BYTES:
                    raise httpx.RemoteProtocolError("chunked trailers too large")
                del buf[: end + 2]
                if end == 0:
                    return self._finish()
            elif state == _UNTIL_CLOSE:
                return bool(buf) and not self._keep(buf, len(buf))
            else:  # _DONE: bytes after a complete answer
                return True

    def feed_eof(self) -> bool:
        """The server closed the connection; True when that completes the answer."""
        if self.state == _UNTIL_CLOSE:
            self.state = _DONE
            return True
        return self.state == _DONE

    def _keep(self, buf: bytearray, take: int) -> bool:
        """Move ``take`` bytes of body out of ``buf``; False (answer complete, truncated,
        connection not reusable) when the cap is reached."""
        room = self._max_body - len(self._body)
        if take > room:
            self._body += buf[:room]
            del buf[:take]
            self.truncated = True
            self.keep_alive = False
            self.state = _DONE
            return False
        self._body += buf[:take]
        del buf[:take]
        return True

    def _finish(self) -> bool:
        self.state = _DONE
        if self._buf:  # bytes nobody asked for: do not reuse this connection
            self.keep_alive = False
        return True

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        version = parts[0]
        if (
            len(parts) < 2
            or version not in (b"HTTP/1.1", b"HTTP/1.0")
            or len(parts[1]) != 3
            or not parts[1].isdigit()
        ):
            raise httpx.RemoteProtocolError("malformed status line")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise httpx.RemoteProtocolError("malformed header line")
            key = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if 100 <= status < 200:
            if status == 101:
                raise httpx.RemoteProtocolError("unexpected protocol switch")
            return  # interim answer (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        self.reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        self.headers = headers
        connection = headers.get("connection", "").lower()
        self.keep_alive = version == b"HTTP/1.1" and "close" not in connection
        if self.keep_alive and "keep-alive" in headers:
            found = _KEEP_ALIVE_TIMEOUT.search(headers["keep-alive"])
            if found:
                self.keep_alive_timeout = int(found.group(1))
        if self._head_only or status in (204, 304):
            self.state = _LENGTH
            self._remaining = 0
            return
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if coding.rsplit(",", 1)[-1].strip().lower() == "chunked":
                self.state = _CHUNK_SIZE
                if "content-length" in headers:  # RFC 9112 §6.3: suspicious, do not reuse
                    self.keep_alive = False
            else:
                self.state = _UNTIL_CLOSE
                self.keep_alive = False
            return
        length = headers.get("content-length")
        if length is None:
            self.state = _UNTIL_CLOSE
            self.keep_alive = False
            return
        values = {v.strip() for v in length.split(",")}
        if len(values) != 1:
            raise httpx.RemoteProtocolError("conflicting Content-Length")
        digits = values.pop()
        if not digits.isdigit() or len(digits) > 18:
            raise httpx.RemoteProtocolError("malformed Content-Length")
        self.state = _LENGTH
        self._remaining = int(digits)
