"""A small Hugging Face Hub stand-in on 127.0.0.1 for tests: enough of the Hub's HTTP API for the real
`huggingface_hub` client (2.4, httpx2 transport) to create a model repo, commit files, read repo info and download
files by branch or commit hash. Point the client at it with `HF_ENDPOINT=<server.url>` (or `server.patch(monkeypatch)`
in-process).

Only what the client actually calls is implemented (each endpoint below names the `huggingface_hub` function that
uses it). Everything is kept in memory: a repo is a list of commits, each a full snapshot `{path: bytes}`, plus
branches pointing at commits. Files are always uploaded inline (base64 in the commit's NDJSON body): the preupload
answer marks every file "regular", so the client never uses LFS or Xet. Unknown requests are answered 404 and
recorded in `server.unhandled`, so a test can assert the client asked for nothing unexpected.

Failures are the Hub's own (status code + `X-Error-Code` header, which `huggingface_hub.utils.hf_raise_for_status`
turns into its typed errors): `RepoNotFound`, `RevisionNotFound`, `EntryNotFound`; a 403 for a namespace listed in
`server.forbidden_namespaces` (pushing where the token may not write); 404 `RepoNotFound` for every repo of
`server.hidden_namespaces` except on creation, which answers "already exists" (what the Hub does with someone
else's private repo).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file, which the Hub sends as the ETag of a non-LFS file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, bytes]  # the whole tree at this commit


@dataclass
class Repo:
    repo_id: str
    private: bool = False
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid

    def resolve(self, revision: str) -> Commit | None:
        """A branch name or a full commit hash -> the commit (None: no such revision)."""
        revision = unquote(revision)
        oid = self.branches.get(revision, revision)
        return next((c for c in self.commits if c.oid == oid), None)

    def commit(self, branch: str, message: str, files: dict[str, bytes], deleted: set[str]) -> Commit:
        parent = self.resolve(branch)
        tree = {k: v for k, v in (parent.files if parent else {}).items() if k not in deleted}
        tree.update(files)
        seed = f"{self.repo_id}\n{len(self.commits)}\n{message}\n{time.time_ns()}".encode()
        commit = Commit(hashlib.sha1(seed).hexdigest(), message, tree)
        self.commits.append(commit)
        self.branches[branch] = commit.oid
        return commit


class HubServer:
    """`with HubServer() as hub: ...` serves on a free port of 127.0.0.1 in a daemon thread."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.forbidden_namespaces: set[str] = set()  # creating or writing a repo there: 403
        self.hidden_namespaces: set[str] = set()  # someone else's private repos: "exists" on create, else 404
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.unhandled: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="hub-server", daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def patch(self, monkeypatch) -> None:
        """Points this process's `huggingface_hub` at the server (its endpoint constants are read at import time)
        and leaves offline mode (the test session runs with HF_HUB_OFFLINE=1)."""
        from huggingface_hub import constants

        monkeypatch.setenv("HF_ENDPOINT", self.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(constants, "ENDPOINT", self.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", self.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        # transformers keeps one shared HfApi (Trainer's pushes), whose endpoint was fixed when it was first made,
        # possibly by an earlier test against another server: start from a fresh one.
        import transformers.utils.hub as transformers_hub

        monkeypatch.setattr(transformers_hub, "_hf_api", None)

    def env(self) -> dict[str, str]:
        """Environment variables of a subprocess that talks to this server."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
        }

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].resolve(revision).files)


# Routes: (method, regex over the URL path) -> handler method name. `repo` is "owner/name" (or "name").
_REPO = r"(?P<repo>[\w.-]+(?:/[\w.-]+)?)"
_ROUTES = [
    ("POST", r"/api/repos/create", "create_repo"),  # HfApi.create_repo
    ("POST", r"/api/validate-yaml", "validate_yaml"),  # ModelCard.push_to_hub / upload checks of README.md
    ("GET", rf"/api/models/{_REPO}/revision/(?P<rev>[^/]+)", "repo_info"),  # HfApi.model_info(revision=...)
    ("GET", rf"/api/models/{_REPO}", "repo_info"),  # HfApi.model_info / repo_exists
    ("POST", rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", "preupload"),  # create_commit: upload modes
    ("POST", rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", "commit"),  # create_commit: the NDJSON commit
    ("GET", rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),  # list_repo_tree / files
    ("POST", rf"/api/models/{_REPO}/paths-info/(?P<rev>[^/]+)", "paths_info"),  # get_paths_info
    ("HEAD", rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),  # get_hf_file_metadata
    ("GET", rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),  # hf_hub_download
    # huggingface_hub's user-agent asks once a day for its AI-agent registry, unless HF_HUB_DISABLE_TELEMETRY was set
    # before it was imported (a process that imported it before `modeling_qface` still asks): an empty registry.
    ("GET", r"/api/agent-harnesses", "agent_harnesses"),
]


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: the test output is for the tests
        pass

    def agent_harnesses(self) -> None:
        self._json({"standardEnvVars": [], "harnesses": {}})

    # ------------------------------------------------------------------------------------------------ plumbing
    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        self.hub.requests.append((method, path))
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        for route_method, pattern, name in _ROUTES:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                with self.hub.lock:
                    getattr(self, name)(**{k: v for k, v in match.groupdict().items() if v is not None})
                return
        self.hub.unhandled.append((method, path))
        self._error(404, "Unhandled", f"not implemented by tests/hub_server.py: {method} {path}")

    do_GET = lambda self: self._dispatch("GET")  # noqa: E731
    do_HEAD = lambda self: self._dispatch("HEAD")  # noqa: E731
    do_POST = lambda self: self._dispatch("POST")  # noqa: E731

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        # The client reads `X-Error-Code` (RepoNotFound -> RepositoryNotFoundError, ...) and the JSON "error".
        self._json({"error": message}, status, {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})})

    def _repo(self, repo: str) -> Repo | None:
        found = None if repo.split("/")[0] in self.hub.hidden_namespaces else self.hub.repos.get(repo)
        if found is None:
            self._error(404, "RepoNotFound", f"Repository not found: {repo}")
        return found

    def _revision(self, repo: Repo, rev: str) -> Commit | None:
        commit = repo.resolve(rev)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}")
        return commit

    # ------------------------------------------------------------------------------------------------ endpoints
    def create_repo(self) -> None:
        payload = json.loads(self.body or b"{}")
        if payload.get("type", "model") not in (None, "model"):
            return self._error(400, "BadRequest", "only model repos are served here")
        namespace = payload.get("organization") or "me"
        repo_id = f"{namespace}/{payload['name']}"
        if namespace in self.hub.forbidden_namespaces:
            return self._error(
                403, "Forbidden", f'You don\'t have the rights to create a model under the namespace "{namespace}"'
            )
        url = f"{self.hub.url}/{repo_id}"
        if repo_id in self.hub.repos or namespace in self.hub.hidden_namespaces:
            return self._json({"error": "You already created this model repo", "url": url}, 409)
        # huggingface_hub 2.x sends `visibility` ("public" / "private" / ...); older clients a `private` bool.
        private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
        repo = self.hub.repos[repo_id] = Repo(repo_id, private)
        repo.commit("main", "initial commit", {".gitattributes": GITATTRIBUTES}, set())
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def validate_yaml(self) -> None:
        self._json({"errors": [], "warnings": []})

    def repo_info(self, repo: str, rev: str = "main") -> None:
        found = self._repo(repo)
        commit = found and self._revision(found, rev)
        if commit is None:
            return
        self._json(
            {
                "id": repo,
                "modelId": repo,
                "sha": commit.oid,
                "private": found.private,
                "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
                "lastModified": "2026-01-01T00:00:00.000Z",
            }
        )

    def preupload(self, repo: str, rev: str) -> None:
        found = self._repo(repo)
        commit = found and self._revision(found, rev)
        if commit is None:
            return
        files = json.loads(self.body)["files"]
        # "regular": the content goes inline in the commit request (no LFS batch API, no Xet).
        self._json(
            {
                "files": [
                    {
                        "path": f["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": git_blob_sha1(commit.files[f["path"]]) if f["path"] in commit.files else None,
                    }
                    for f in files
                ]
            }
        )

    def commit(self, repo: str, rev: str) -> None:
        if repo.split("/")[0] in self.hub.forbidden_namespaces:
            return self._error(403, "Forbidden", f"You don't have the rights to write to {repo}")
        found = self._repo(repo)
        if found is None or self._revision(found, rev) is None:
            return
        header, files, deleted = {}, {}, set()
        for line in self.body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                header = value
            elif item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] in ("deletedFile", "deletedFolder"):
                deleted.add(value["path"])
            else:  # lfsFile / copies: never produced, since preupload says "regular"
                return self._error(400, "BadRequest", f"commit operation {item['key']!r} not supported")
        commit = found.commit(unquote(rev), header.get("summary", ""), files, deleted)
        self._json(
            {"commitUrl": f"{self.hub.url}/{repo}/commit/{commit.oid}", "commitOid": commit.oid, "pullRequestUrl": None}
        )

    def _entries(self, commit: Commit, paths) -> list[dict]:
        return [
            {"type": "file", "path": p, "size": len(commit.files[p]), "oid": git_blob_sha1(commit.files[p])}
            for p in paths
            if p in commit.files
        ]

    def tree(self, repo: str, rev: str, path: str = "") -> None:
        found = self._repo(repo)
        commit = found and self._revision(found, rev)
        if commit is None:
            return
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        # Flat repos only: every file is listed at the top level (`recursive` changes nothing).
        self._json(self._entries(commit, sorted(p for p in commit.files if p.startswith(prefix))))

    def paths_info(self, repo: str, rev: str) -> None:
        found = self._repo(repo)
        commit = found and self._revision(found, rev)
        if commit is None:
            return
        body = self.body.decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body)["paths"]
        else:  # form-encoded: paths=a&paths=b
            from urllib.parse import parse_qs

            paths = parse_qs(body).get("paths", [])
        self._json(self._entries(commit, paths))

    def resolve(self, repo: str, rev: str, path: str) -> None:
        found = self._repo(repo)
        commit = found and self._revision(found, rev)
        if commit is None:
            return
        path = unquote(path)
        if path not in commit.files:
            return self._error(404, "EntryNotFound", f"Entry not found: {path}", {"X-Repo-Commit": commit.oid})
        data = commit.files[path]
        # The client keys its cache on the commit hash and the ETag (git blob id; an LFS file's would be sha256).
        self._send(
            200,
            data,
            {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"},
            content_type="application/octet-stream",
        )


__all__ = ["HubServer", "git_blob_sha1"]
