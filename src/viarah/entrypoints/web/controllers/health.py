"""Liveness (``/healthz``) and readiness (``/readyz``): public, unauthenticated."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from viarah.domain.jobs.services import SystemHealth
from viarah.entrypoints.web.errors import HEALTH_ERRORS, error_response


class HealthOut(msgspec.Struct, frozen=True):
    status: str


class WorkerOut(msgspec.Struct, frozen=True):
    last_heartbeat_age_seconds: float | None


class ReadinessOut(msgspec.Struct, frozen=True):
    database: str
    broker: str
    worker: WorkerOut


READINESS_ERRORS = {
    HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
        data_container=ReadinessOut,
        description="The database or the broker is unavailable",
        generate_examples=False,
    )
}


def _word(ok: bool) -> str:
    return "ok" if ok else "unavailable"


class HealthController(Controller):
    """Probes for load balancers and orchestrators."""

    tags = ["health"]

    @get(
        "/healthz",
        responses=HEALTH_ERRORS,
        summary="Liveness: 200 when the database answers, else 503",
    )
    async def healthz(self, health: NamedDependency[SystemHealth]) -> Response[Any]:
        if await health.database_ok():
            return Response(HealthOut(status="ok"))
        return error_response(
            HTTP_503_SERVICE_UNAVAILABLE, "the database is unavailable", "database_unavailable"
        )

    @get(
        "/readyz",
        responses=READINESS_ERRORS,
        summary="Readiness: database, broker and worker heartbeat",
    )
    async def readyz(self, health: NamedDependency[SystemHealth]) -> Response[ReadinessOut]:
        report = await health.readiness()
        age = report.last_heartbeat_age
        body = ReadinessOut(
            database=_word(report.database),
            broker=_word(report.broker),
            worker=WorkerOut(
                last_heartbeat_age_seconds=None if age is None else round(age.total_seconds(), 3)
            ),
        )
        status = HTTP_200_OK if report.ready else HTTP_503_SERVICE_UNAVAILABLE
        return Response(body, status_code=status)
