"""The operator's files: docker-compose.yml, Dockerfile, .dockerignore and .env.example.

No Docker engine is needed: the files are parsed and their structure checked, and Compose's
``${VAR}`` interpolation is reproduced for the variables the stack uses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from dotenv import dotenv_values

from viarah.settings import VARIABLES, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"

APP_SERVICES = ("web", "worker")
LONG_RUNNING = ("db", "redis", "web", "worker")
#: Variables an operator must fill in; .env.example ships them empty.
SECRETS = (
    "POSTGRES_PASSWORD",
    "VIA_RAH_SECRET_KEY",
    "VIA_RAH_ENCRYPTION_KEY",
    "WEBPUSH_VAPID_PUBLIC_KEY",
    "WEBPUSH_VAPID_PRIVATE_KEY",
)
#: What an operator would put into .env; never printed, never a real key.
FILLED = {
    "POSTGRES_PASSWORD": "pw-for-tests-only",
    "VIA_RAH_SECRET_KEY": "secret-for-tests-only-0123456789",
}


# --- helpers ------------------------------------------------------------------------------


class MissingValue(AssertionError):
    """Compose would refuse to start: a ``${NAME:?...}`` variable has no value."""


_INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, $NAME, ${NAME}, ${NAME:-default}, ${NAME:?err}."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3)
        current = env.get(name)
        unset = current is None or (
            operator is not None and operator.startswith(":") and not current
        )
        if operator in (":-", "-") and unset:
            return argument
        if operator in (":?", "?") and unset:
            raise MissingValue(f"compose needs {name}: {argument}")
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


def interpolated_names(text: str) -> set[str]:
    return {m.group(1) or m.group(4) for m in _INTERPOLATION.finditer(text) if m.group(0) != "$$"}


def environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def healthcheck_text(service: dict[str, Any]) -> str:
    return " ".join(str(part) for part in as_list(service.get("healthcheck", {}).get("test")))


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(duration))
    assert parts, f"not a compose duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """Instructions (KEYWORD, arguments) per build stage, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), arguments.strip()))
    return stages


def example_assignments() -> dict[str, str]:
    return {k: v or "" for k, v in dotenv_values(ENV_EXAMPLE).items()}


def example_mentions() -> set[str]:
    """Names assigned or shown commented out (``# NAME=...``) in .env.example."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def filled_env() -> dict[str, str]:
    return {**example_assignments(), **FILLED}


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose.get("services") or {})


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert stages, "Dockerfile has no FROM"
    return stages[-1]


def instructions(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for kw, arguments in stage if kw == keyword]


def argv(service: dict[str, Any]) -> list[str]:
    """What the container runs: compose entrypoint/command over the Dockerfile's."""
    stage = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        entrypoint = json.loads(instructions(stage, "ENTRYPOINT")[-1])
    command = service.get("command")
    if command is None:
        command = json.loads(instructions(stage, "CMD")[-1])
    if isinstance(command, str):
        command = command.split()
    if isinstance(entrypoint, str):
        entrypoint = entrypoint.split()
    return [str(part) for part in [*entrypoint, *command]]


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


# --- docker-compose.yml -------------------------------------------------------------------


def test_compose_defines_db_redis_web_and_worker(services: dict[str, Any]) -> None:
    missing = {"db", "redis", "web", "worker"} - set(services)
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"


def test_db_keeps_its_data_in_the_db_data_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    mounts = []
    for volume in as_list(services["db"].get("volumes")):
        if isinstance(volume, dict):
            mounts.append((volume.get("source"), volume.get("target")))
        else:
            source, _, rest = str(volume).partition(":")
            mounts.append((source, rest.split(":")[0]))
    assert ("db_data", "/var/lib/postgresql/data") in mounts, f"db volumes: {mounts}"
    assert "db_data" in (compose.get("volumes") or {}), "top-level volumes must declare db_data"


def test_db_healthcheck_uses_pg_isready(services: dict[str, Any]) -> None:
    check = healthcheck_text(services["db"])
    assert "pg_isready" in check, f"db healthcheck: {check!r}"
    assert "-U" in check, f"db healthcheck names no user: {check!r}"
    assert "-d" in check, f"db healthcheck names no database: {check!r}"


def test_redis_healthcheck_pings(services: dict[str, Any]) -> None:
    check = healthcheck_text(services["redis"])
    assert "redis-cli" in check, f"redis healthcheck: {check!r}"
    assert "ping" in check, f"redis healthcheck: {check!r}"


def test_web_and_worker_run_the_same_image(services: dict[str, Any]) -> None:
    web, worker = services["web"], services["worker"]
    assert web.get("build") or web.get("image"), "web has neither build nor image"
    assert (web.get("build"), web.get("image")) == (worker.get("build"), worker.get("image"))


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_waits_for_healthy_db_and_redis(services: dict[str, Any], name: str) -> None:
    depends = services[name].get("depends_on")
    assert isinstance(depends, dict), f"{name}.depends_on must be a mapping with conditions"
    for dependency in ("db", "redis"):
        condition = (depends.get(dependency) or {}).get("condition")
        assert condition == "service_healthy", f"{name} → {dependency}: condition {condition!r}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_reads_dot_env(services: dict[str, Any], name: str) -> None:
    files = [
        f if isinstance(f, str) else f.get("path") for f in as_list(services[name].get("env_file"))
    ]
    assert ".env" in files, f"{name}.env_file: {files}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_points_at_the_db_and_redis_services(
    services: dict[str, Any], name: str
) -> None:
    env = environment(services[name])
    assert "DATABASE_URL" in env, f"{name}.environment: {sorted(env)}"
    assert "BROKER_URL" in env, f"{name}.environment: {sorted(env)}"
    filled = filled_env()
    database = urlsplit(interpolate(env["DATABASE_URL"], filled))
    assert database.scheme in ("postgresql", "postgres"), database.geturl()
    assert database.hostname == "db", database.geturl()
    assert "db" in services
    db_env = {k: interpolate(v, filled) for k, v in environment(services["db"]).items()}
    assert database.username == db_env["POSTGRES_USER"], "DATABASE_URL user ≠ db's POSTGRES_USER"
    assert database.password == db_env["POSTGRES_PASSWORD"], "DATABASE_URL password ≠ db's"
    assert database.path == "/" + db_env["POSTGRES_DB"], "DATABASE_URL database ≠ db's POSTGRES_DB"
    broker = urlsplit(interpolate(env["BROKER_URL"], filled))
    assert broker.scheme == "redis", broker.geturl()
    assert broker.hostname == "redis", broker.geturl()
    assert "redis" in services


def test_compose_refuses_to_start_without_a_postgres_password(services: dict[str, Any]) -> None:
    unfilled = example_assignments()
    assert not unfilled.get("POSTGRES_PASSWORD")
    with pytest.raises(MissingValue):
        interpolate(environment(services["db"])["POSTGRES_PASSWORD"], unfilled)
    with pytest.raises(MissingValue):
        interpolate(environment(services["web"])["DATABASE_URL"], unfilled)


def test_worker_runs_viarah_worker(services: dict[str, Any]) -> None:
    args = argv(services["worker"])
    assert args[:2] == ["viarah", "worker"], f"worker runs {args}"


def test_web_runs_viarah_web_on_port_8000(services: dict[str, Any]) -> None:
    web = services["web"]
    args = argv(web)
    assert args[:2] == ["viarah", "web"], f"web runs {args}"
    assert option(args, "--host") == "0.0.0.0", f"web must listen on all interfaces: {args}"
    assert option(args, "--port") == "8000", f"web port: {args}"
    published = [
        str(p.get("target")) if isinstance(p, dict) else str(p) for p in as_list(web.get("ports"))
    ]
    assert any(p == "8000" or p.endswith(":8000") for p in published), f"web ports: {published}"


def test_web_healthcheck_probes_healthz_on_an_allowed_host(services: dict[str, Any]) -> None:
    check = healthcheck_text(services["web"])
    match = re.search(r"http://([^/:'\"]+):8000/healthz", check)
    assert match, f"web healthcheck does not GET /healthz on port 8000: {check!r}"
    allowed = example_assignments()["ALLOWED_HOSTS"].split(",")
    assert match.group(1) in allowed, (
        f"healthcheck host {match.group(1)} is not in .env.example's ALLOWED_HOSTS {allowed}"
    )


def test_migrate_service_runs_before_web_and_worker(services: dict[str, Any]) -> None:
    migrate = services.get("migrate")
    assert migrate is not None, "docker-compose.yml lacks the one-shot migrate service"
    assert argv(migrate)[:2] == ["viarah", "migrate"], f"migrate runs {argv(migrate)}"
    assert migrate.get("image") == services["web"].get("image"), "migrate must use web's image"
    assert str(migrate.get("restart", "no")) in ("no", "False"), "a one-shot must not restart"
    for name in APP_SERVICES:
        condition = services[name]["depends_on"].get("migrate", {}).get("condition")
        assert condition == "service_completed_successfully", f"{name} → migrate: {condition!r}"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_service_restarts_unless_stopped(services: dict[str, Any], name: str) -> None:
    assert services[name].get("restart") == "unless-stopped", f"{name}.restart"


def test_worker_gets_time_to_finish_a_job_on_stop(services: dict[str, Any]) -> None:
    grace = services["worker"].get("stop_grace_period")
    assert grace is not None, "worker needs a stop_grace_period"
    assert seconds(grace) >= 30, f"worker stop_grace_period {grace} is under 30s"


def test_compose_variables_are_declared_documented_and_in_the_example() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    declared = {v.name: v for v in VARIABLES}
    used = interpolated_names(text)
    undeclared = sorted(used - set(declared))
    assert not undeclared, f"compose uses {undeclared}, not in settings.VARIABLES"
    absent = sorted(used - set(example_assignments()))
    assert not absent, f"compose uses {absent}, which .env.example does not set"
    for name, default in re.findall(r"\$\{(\w+):-([^}]*)\}", text):
        assert default == declared[name].default, (
            f"compose default for {name} is {default!r}; settings says {declared[name].default!r}"
        )


# --- Dockerfile and .dockerignore ---------------------------------------------------------


def test_dockerfile_is_multi_stage_and_copies_the_built_venv(
    final_stage: list[tuple[str, str]],
) -> None:
    stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert len(stages) >= 2, "Dockerfile must have a builder stage and a runtime stage"
    copies = instructions(final_stage, "COPY")
    assert any("--from=" in copy for copy in copies), f"runtime copies nothing built: {copies}"


def test_runtime_runs_as_a_non_root_user(final_stage: list[tuple[str, str]]) -> None:
    users = instructions(final_stage, "USER")
    assert users, "the runtime stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"runtime USER is {users[-1]}"


def test_runtime_exposes_8000(final_stage: list[tuple[str, str]]) -> None:
    ports = " ".join(instructions(final_stage, "EXPOSE")).split()
    assert "8000" in ports or "8000/tcp" in ports, f"EXPOSE {ports}"


def test_entrypoint_is_viarah_and_default_command_is_web(
    final_stage: list[tuple[str, str]],
) -> None:
    entrypoints = instructions(final_stage, "ENTRYPOINT")
    assert entrypoints, "the runtime stage has no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["viarah"], f"ENTRYPOINT {entrypoints}"
    commands = instructions(final_stage, "CMD")
    assert commands, "the runtime stage has no CMD"
    assert json.loads(commands[-1])[0] == "web", f"CMD {commands}"


def test_runtime_has_pg_client_and_no_build_tools(final_stage: list[tuple[str, str]]) -> None:
    runs = " ".join(instructions(final_stage, "RUN"))
    assert "postgresql-client" in runs, "runtime must install postgresql-client (pg_dump)"
    tools = re.findall(r"\b(build-essential|gcc|g\+\+|clang|make|libpq-dev|python3-dev)\b", runs)
    assert not tools, f"runtime stage installs build tools: {tools}"


def test_runtime_output_is_unbuffered(final_stage: list[tuple[str, str]]) -> None:
    env = " ".join(instructions(final_stage, "ENV"))
    assert re.search(r"\bPYTHONUNBUFFERED[= ]1\b", env), f"ENV {env!r}"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    missing = {".env", ".venv", ".git", "var"} - patterns
    assert not missing, f".dockerignore does not exclude {sorted(missing)}"


# --- .env.example -------------------------------------------------------------------------


def test_env_example_sets_every_variable_compose_does_not(services: dict[str, Any]) -> None:
    assigned = set(example_assignments())
    from_compose = set(environment(services["web"]))
    missing = sorted(v.name for v in VARIABLES if v.name not in from_compose | assigned)
    assert not missing, f".env.example does not set {missing}"
    overridden = sorted(from_compose & assigned)
    assert not overridden, f".env.example sets {overridden}, which compose overrides"
    unmentioned = sorted(from_compose - example_mentions())
    assert not unmentioned, f".env.example should show (commented) {unmentioned}"


def test_env_example_uses_no_deprecated_alias() -> None:
    aliases = {v.alias for v in VARIABLES if v.alias}
    used = sorted(aliases & example_mentions())
    assert not used, f".env.example uses deprecated names {used}"


def test_env_example_ships_no_secret() -> None:
    values = example_assignments()
    filled = sorted(name for name in SECRETS if values.get(name))
    assert not filled, f".env.example must leave {filled} empty"
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    keylike = [
        run
        for run in re.findall(r"[A-Za-z0-9_\-+/]{32,}={0,2}", text)
        if re.search(r"\d", run) and re.search(r"[A-Za-z]", run)
    ]
    assert not keylike, f".env.example contains key-like strings {keylike}"


def test_env_example_is_refused_until_the_secret_key_is_set(services: dict[str, Any]) -> None:
    compose_env = {k: interpolate(v, filled_env()) for k, v in environment(services["web"]).items()}
    unfilled = {**example_assignments(), **compose_env}
    problems = load_settings(unfilled).problems
    assert problems, "the shipped example must not pass `viarah check` (empty secret key)"
    assert all(p.startswith("VIA_RAH_SECRET_KEY:") for p in problems), problems
    filled = {**filled_env(), **compose_env}
    assert load_settings(filled).problems == (), "a filled-in example must be valid"
