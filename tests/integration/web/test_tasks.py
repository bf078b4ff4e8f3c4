"""Projects, tasks and watching: shapes, roles, partial updates, cross-org ids."""

from __future__ import annotations

from tests.integration.web.conftest import Web, assert_error

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
TASK_KEYS = {"id", "project_id", "title", "status", "assignee_user_id", "created_at"}


def test_projects_members_read_managers_create(web: Web) -> None:
    alice = web.member("alice@example.com")
    pm = web.member("pm@example.com")
    bob = web.member("bob@example.com")
    org_id = web.org(alice)
    web.add_member(alice, org_id, pm, role="pm")
    web.add_member(alice, org_id, bob, role="member")
    path = f"/api/orgs/{org_id}/projects"

    created = pm.post(path, json={"name": "Website"})
    assert created.status_code == 201, created.text
    project = created.json()["project"]
    assert set(project) == {"id", "name", "created_at"}
    assert project["name"] == "Website"
    assert project["created_at"].endswith("Z")
    assert alice.post(path, json={"name": "App"}).status_code == 201

    assert_error(bob.post(path, json={"name": "Mine"}), 403, "forbidden")
    error = assert_error(alice.post(path, json={"name": "   "}), 400)
    assert error["fields"] == {"name": "must not be empty"}
    listing = bob.get(path)
    assert listing.status_code == 200
    assert sorted(p["name"] for p in listing.json()["projects"]) == ["App", "Website"]


def test_create_list_get_and_patch_tasks(web: Web) -> None:
    alice = web.member("alice@example.com")
    bob = web.member("bob@example.com")
    org_id = web.org(alice)
    web.add_member(alice, org_id, bob)
    project_id = web.project(alice, org_id)
    tasks_path = f"/api/orgs/{org_id}/projects/{project_id}/tasks"

    created = bob.post(
        tasks_path,
        json={"title": "Fix login", "status": "in_progress", "assignee_user_id": alice.user_id},
    )
    assert created.status_code == 201, created.text
    task = created.json()["task"]
    assert set(task) == TASK_KEYS
    assert task["project_id"] == project_id
    assert task["title"] == "Fix login"
    assert task["status"] == "in_progress"
    assert task["assignee_user_id"] == alice.user_id
    default = web.task(alice, org_id, project_id, title="Plain")
    assert default["status"] == "todo"
    assert default["assignee_user_id"] is None

    listing = bob.get(tasks_path).json()["tasks"]
    assert {t["id"] for t in listing} == {task["id"], default["id"]}
    task_path = f"/api/orgs/{org_id}/tasks/{task['id']}"
    assert bob.get(task_path).json() == {"task": task}

    renamed = bob.patch(task_path, json={"title": "Fix the login"})
    assert renamed.status_code == 200
    assert renamed.json()["task"]["assignee_user_id"] == alice.user_id  # absent: unchanged
    assert renamed.json()["task"]["status"] == "in_progress"
    moved = bob.patch(task_path, json={"status": "done", "assignee_user_id": bob.user_id})
    assert moved.json()["task"]["status"] == "done"
    assert moved.json()["task"]["assignee_user_id"] == bob.user_id
    unassigned = bob.patch(task_path, json={"assignee_user_id": None})
    assert unassigned.json()["task"]["assignee_user_id"] is None  # null: unassigned
    assert unassigned.json()["task"]["title"] == "Fix the login"
    assert bob.patch(task_path, json={}).json() == unassigned.json()


def test_invalid_task_input_is_400_naming_the_field(web: Web) -> None:
    alice = web.member("alice@example.com")
    outsider = web.member("out@example.com")
    org_id = web.org(alice)
    project_id = web.project(alice, org_id)
    tasks_path = f"/api/orgs/{org_id}/projects/{project_id}/tasks"
    task_path = f"/api/orgs/{org_id}/tasks/{web.task(alice, org_id, project_id)['id']}"

    for path, method, body, field in (
        (tasks_path, "POST", {"title": "x", "status": "someday"}, "status"),
        (
            tasks_path,
            "POST",
            {"title": "x", "assignee_user_id": outsider.user_id},
            "assignee_user_id",
        ),
        (tasks_path, "POST", {"title": "x", "assignee_user_id": "nobody"}, "assignee_user_id"),
        (tasks_path, "POST", {"title": ["x"]}, "title"),
        (tasks_path, "POST", {"title": "x", "priority": 1}, "priority"),
        (task_path, "PATCH", {"status": "someday"}, "status"),
        (task_path, "PATCH", {"title": None}, "title"),
        (task_path, "PATCH", {"title": ""}, "title"),
        (task_path, "PATCH", {"assignee_user_id": outsider.user_id}, "assignee_user_id"),
        (task_path, "PATCH", {"assignee_user_id": 7}, "assignee_user_id"),
        (task_path, "PATCH", {"watchers": []}, "watchers"),
    ):
        error = assert_error(alice.request(method, path, json=body), 400)
        assert field in error["fields"], (body, error)
        assert field in error["error"], (body, error)
    task = alice.get(task_path).json()["task"]
    assert task["status"] == "todo"
    assert task["assignee_user_id"] is None


def test_ids_from_another_org_or_unknown_are_404(web: Web) -> None:
    alice = web.member("alice@example.com")
    acme = web.org(alice, "Acme")
    beta = web.org(alice, "Beta")
    acme_project = web.project(alice, acme)
    beta_project = web.project(alice, beta)
    beta_task = web.task(alice, beta, beta_project)["id"]

    for method, path, body in (
        ("GET", f"/api/orgs/{acme}/projects/{beta_project}/tasks", None),
        ("POST", f"/api/orgs/{acme}/projects/{beta_project}/tasks", {"title": "x"}),
        ("GET", f"/api/orgs/{acme}/projects/{UNKNOWN_ID}/tasks", None),
        ("GET", f"/api/orgs/{acme}/projects/not-an-id/tasks", None),
        ("GET", f"/api/orgs/{acme}/tasks/{beta_task}", None),
        ("PATCH", f"/api/orgs/{acme}/tasks/{beta_task}", {"title": "moved"}),
        ("PUT", f"/api/orgs/{acme}/tasks/{beta_task}/watch", None),
        ("DELETE", f"/api/orgs/{acme}/tasks/{beta_task}/watch", None),
        ("GET", f"/api/orgs/{acme}/tasks/{UNKNOWN_ID}", None),
        ("GET", f"/api/orgs/{UNKNOWN_ID}/projects", None),
        ("GET", "/api/orgs/not-an-id", None),
    ):
        assert_error(alice.request(method, path, json=body), 404, "not_found")
    assert alice.get(f"/api/orgs/{acme}/projects/{acme_project}/tasks").json() == {"tasks": []}
    assert alice.get(f"/api/orgs/{beta}/tasks/{beta_task}").json()["task"]["title"] == "Ship it"


def test_watch_and_unwatch_a_task(web: Web) -> None:
    alice = web.member("alice@example.com")
    bob = web.member("bob@example.com")
    org_id = web.org(alice)
    web.add_member(alice, org_id, bob)
    project_id = web.project(alice, org_id)
    task_id = web.task(alice, org_id, project_id)["id"]
    watch = f"/api/orgs/{org_id}/tasks/{task_id}/watch"
    tasks = web.container.tasks()

    def watchers() -> set[str]:
        actor = web.run(web.container.authentication().from_api_token, web.bearer(alice).token)
        return set(web.run(tasks.watchers, actor, org_id, task_id))

    first = bob.put(watch)
    assert first.status_code == 204
    assert first.content == b""
    assert bob.put(watch).status_code == 204  # idempotent
    assert watchers() == {bob.user_id}
    token = web.bearer(alice)
    assert token.put(watch).status_code == 204
    assert watchers() == {bob.user_id, alice.user_id}
    assert bob.delete(watch).status_code == 204
    assert watchers() == {alice.user_id}
