"""Tasks inside projects, and watching them. Any member may create, edit and watch."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from viarah.domain.orgs.model import Task
from viarah.domain.orgs.services import Tasks
from viarah.domain.shared.actor import Actor
from viarah.entrypoints.web.errors import API_ERRORS


class TaskIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    title: str
    status: str = "todo"
    assignee_user_id: str | None = None


class TaskPatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Only the fields given change; ``"assignee_user_id": null`` unassigns."""

    title: str | msgspec.UnsetType = msgspec.UNSET
    status: str | msgspec.UnsetType = msgspec.UNSET
    assignee_user_id: str | msgspec.UnsetType | None = msgspec.UNSET


class TaskBody(msgspec.Struct, frozen=True):
    id: str
    project_id: str
    title: str
    status: str
    assignee_user_id: str | None
    created_at: datetime

    @staticmethod
    def of(task: Task) -> TaskBody:
        return TaskBody(
            id=task.id,
            project_id=task.project_id,
            title=task.title,
            status=task.status.value,
            assignee_user_id=task.assignee_user_id,
            created_at=task.created_at,
        )


class TaskOut(msgspec.Struct, frozen=True):
    task: TaskBody


class TaskListOut(msgspec.Struct, frozen=True):
    tasks: list[TaskBody]


class ProjectTaskController(Controller):
    path = "/orgs/{org_id:str}/projects/{project_id:str}/tasks"
    tags = ["tasks"]

    @get("", responses=API_ERRORS, summary="Tasks of a project")
    async def list_tasks(
        self,
        actor: NamedDependency[Actor],
        tasks: NamedDependency[Tasks],
        org_id: FromPath[str],
        project_id: FromPath[str],
    ) -> TaskListOut:
        found = await tasks.list_tasks(actor, org_id, project_id)
        return TaskListOut(tasks=[TaskBody.of(t) for t in found])

    @post("", responses=API_ERRORS, status_code=HTTP_201_CREATED, summary="Create a task")
    async def create_task(
        self,
        actor: NamedDependency[Actor],
        tasks: NamedDependency[Tasks],
        org_id: FromPath[str],
        project_id: FromPath[str],
        data: JSONBody[TaskIn],
    ) -> TaskOut:
        task = await tasks.create(
            actor,
            org_id,
            project_id,
            data.title,
            status=data.status,
            assignee_user_id=data.assignee_user_id,
        )
        return TaskOut(task=TaskBody.of(task))


class TaskController(Controller):
    path = "/orgs/{org_id:str}/tasks/{task_id:str}"
    tags = ["tasks"]

    @get("", responses=API_ERRORS, summary="One task")
    async def get_task(
        self,
        actor: NamedDependency[Actor],
        tasks: NamedDependency[Tasks],
        org_id: FromPath[str],
        task_id: FromPath[str],
    ) -> TaskOut:
        return TaskOut(task=TaskBody.of(await tasks.get(actor, org_id, task_id)))

    @patch("", responses=API_ERRORS, summary="Change a task's title, status or assignee")
    async def update_task(
        self,
        actor: NamedDependency[Actor],
        tasks: NamedDependency[Tasks],
        org_id: FromPath[str],
        task_id: FromPath[str],
        data: JSONBody[TaskPatch],
    ) -> TaskOut:
        title = None if data.title is msgspec.UNSET else data.title
        status = None if data.status is msgspec.UNSET else data.status
        if data.assignee_user_id is msgspec.UNSET:
            task = await tasks.update(actor, org_id, task_id, title=title, status=status)
        else:
            task = await tasks.update(
                actor,
                org_id,
                task_id,
                title=title,
                status=status,
                assignee_user_id=data.assignee_user_id,
            )
        return TaskOut(task=TaskBody.of(task))

    @put("/watch", responses=API_ERRORS, status_code=HTTP_204_NO_CONTENT, summary="Watch the task")
    async def watch(
        self,
        actor: NamedDependency[Actor],
        tasks: NamedDependency[Tasks],
        org_id: FromPath[str],
        task_id: FromPath[str],
    ) -> None:
        await tasks.watch(actor, org_id, task_id)

    @delete("/watch", responses=API_ERRORS, summary="Stop watching the task")
    async def unwatch(
        self,
        actor: NamedDependency[Actor],
        tasks: NamedDependency[Tasks],
        org_id: FromPath[str],
        task_id: FromPath[str],
    ) -> None:
        await tasks.unwatch(actor, org_id, task_id)
