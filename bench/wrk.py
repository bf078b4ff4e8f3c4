"""Closed-loop throughput with wrk (Debian's wrk 4.1): each connection sends its next
request as soon as the previous answer arrives, so this measures the maximum rate.

Every run gets a generated Lua script ending in a ``done`` hook that prints the summary
and latency percentiles as one JSON line (``BENCHJSON {...}``), which we parse.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run; latencies in milliseconds."""

    connections: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    errors: int  # socket errors + timeouts + non-2xx/3xx answers
    non_2xx: int
    socket_errors: int
    timeouts: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lua_string(text: str) -> str:
    """``text`` as a Lua long-bracket literal (no escaping needed inside)."""
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def write_script(path: Path, body: str) -> Path:
    path.write_text(body + "\n" + _DONE)
    return path


def run_wrk(
    url: str,
    script: Path,
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    timeout_s: int = 10,
) -> WrkResult:
    """Run wrk against ``url`` for ``seconds`` with ``connections`` keep-alive connections."""
    threads = max(1, min(threads, connections))
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + timeout_s + 30, check=False
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()} {done.stdout}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    if raw["requests"] and raw["status"] == raw["requests"]:
        raise RuntimeError(f"every answer of {url} was an error status (see the server log)")
    elapsed = raw["duration_us"] / 1e6
    socket_errors = raw["connect"] + raw["read"] + raw["write"]
    return WrkResult(
        connections=connections,
        seconds=round(elapsed, 2),
        requests=raw["requests"],
        rps=round(raw["requests"] / elapsed, 1) if elapsed else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        mean_ms=round(raw["mean_us"] / 1000, 3),
        errors=socket_errors + raw["timeout"] + raw["status"],
        non_2xx=raw["status"],
        socket_errors=socket_errors,
        timeouts=raw["timeout"],
    )


# -- request scripts -------------------------------------------------------------------


def get_script(path: Path, headers: dict[str, str] | None = None) -> Path:
    """A plain GET (the URL's path) with fixed headers."""
    lines = [
        f"wrk.headers[ {lua_string(k)} ] = {lua_string(v)}" for k, v in (headers or {}).items()
    ]
    return write_script(path, "\n".join(lines))


def webhook_script(
    path: Path, *, secret: str, body_template: str, objects: int, key_prefix: str
) -> Path:
    """Issue Hook POSTs, each with its own ``Idempotency-Key`` (``<prefix>-<thread>-<n>``),
    cycling over issues 1..``objects`` (``__IID__`` in the body template)."""
    body = f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Gitlab-Event"] = "Issue Hook"
wrk.headers["X-Gitlab-Token"] = {lua_string(secret)}
local template = {lua_string(body_template)}
local objects = {objects}
local prefix = {lua_string(key_prefix)}
local bodies = {{}}
local counter = 0
local created = 0
thread_id = 0

function setup(thread)
  created = created + 1
  thread:set("thread_id", created)
end

function init(args)
  for iid = 1, objects do
    bodies[iid] = template:gsub("__IID__", tostring(iid))
  end
end

function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = prefix .. "-" .. thread_id .. "-" .. counter
  return wrk.format(nil, nil, nil, bodies[(counter % objects) + 1])
end
"""
    return write_script(path, body)


def replay_script(path: Path, requests_file: Path) -> Path:
    """POSTs replayed round-robin from a file of ``path\\theader=value\\t...\\thexbody`` lines
    (the push fake's capacity test: pre-encrypted Web Push messages)."""
    body = f"""
local requests = {{}}
local counter = 0

local function unhex(text)
  return (text:gsub("..", function(cc) return string.char(tonumber(cc, 16)) end))
end

function init(args)
  for line in io.lines({lua_string(str(requests_file))}) do
    local fields = {{}}
    for field in line:gmatch("[^\\t]+") do table.insert(fields, field) end
    local headers = {{}}
    for i = 2, #fields - 1 do
      local name, value = fields[i]:match("^([^=]+)=(.*)$")
      headers[name] = value
    end
    table.insert(requests, wrk.format("POST", fields[1], headers, unhex(fields[#fields])))
  end
end

function request()
  counter = counter + 1
  return requests[(counter % #requests) + 1]
end
"""
    return write_script(path, body)
