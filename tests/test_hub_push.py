"""`push` / `hf-custom-lm push` against a loopback emulation of the Hub API (no internet).

The server (127.0.0.1, an ephemeral port, started and stopped by each test) answers the requests
`huggingface_hub` 2.x sends for `create_repo`, `create_branch` and `upload_folder`: `preupload` gets
`uploadMode: "regular"` for every file, so the files travel inline (base64) in the commit's NDJSON and
the server can record exactly which files, with which bytes, reached the Hub. LFS/Xet storage is not
emulated: a real Hub sends large files there, which changes the transport, not which files are pushed.
"""

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pytest
from huggingface_hub import constants
from huggingface_hub.errors import LocalTokenNotFoundError

from hf_custom_lm.hub import export, push

from .builders import tiny_model

TOKEN = "hf_loopbackSecret0123456789abcdefTOKEN"


class HubRecorder(BaseHTTPRequestHandler):
    """Records each request as (method, path, authorization, body) and answers like the Hub."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = unquote(urlparse(self.path).path)
        self.server.requests.append(("POST", path, self.headers.get("Authorization"), body))
        endpoint = f"http://127.0.0.1:{self.server.server_port}"
        if path == "/api/repos/create":
            payload = json.loads(body)
            self._json({"url": f"{endpoint}/{payload['organization']}/{payload['name']}"})
        elif path == "/api/validate-yaml":
            self._json({"errors": [], "warnings": []})
        elif "/branch/" in path:
            self._json({})
        elif "/preupload/" in path:
            files = json.loads(body)["files"]
            self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                  for f in files]})
        elif "/commit/" in path:
            self.server.commits.append([json.loads(line) for line in body.splitlines() if line])
            repo_id = path.split("/api/models/")[1].split("/commit/")[0]
            oid = hashlib.sha1(body).hexdigest()
            self.server.oids.append(oid)
            self._json({"commitUrl": f"{endpoint}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None})
        else:
            self._json({"error": f"not emulated: {path}"}, status=404)

    def do_GET(self):
        path = unquote(urlparse(self.path).path)
        self.server.requests.append(("GET", path, self.headers.get("Authorization"), b""))
        self._json({"error": f"not emulated: {path}"}, status=404)

    def _json(self, data, status=200):
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), HubRecorder)
    server.requests, server.commits, server.oids = [], [], []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.endpoint = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def online(hub, monkeypatch):
    """Point this process's huggingface_hub at the loopback server (conftest sets HF_HUB_OFFLINE=1)."""
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return hub


@pytest.fixture
def exported(tmp_path, tokenizer):
    out = export(tiny_model(tokenizer), tokenizer, tmp_path / "export", repo_id="someone/tiny-lm")
    # Training artefacts that may sit next to an export in a run folder: never uploaded.
    (out / "checkpoint-2").mkdir()
    (out / "checkpoint-2" / "optimizer.pt").write_bytes(b"\0" * 64)
    (out / "training_args.bin").write_bytes(b"\0" * 64)
    return out


def committed_files(commit) -> dict[str, bytes]:
    """path -> content of the inline (base64) files of one commit's NDJSON."""
    return {line["value"]["path"]: base64.b64decode(line["value"]["content"])
            for line in commit if line["key"] == "file"}


def expected_files(out) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and not p.relative_to(out).as_posix().startswith("checkpoint-") and p.suffix != ".bin"}


def test_push_creates_repo_and_commits_every_exported_file(online, exported, monkeypatch, caplog, capfd):
    hub = online
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)

    commit = push(exported, "someone/tiny-lm", private=True, commit_message="First upload")

    create = next(r for r in hub.requests if r[1] == "/api/repos/create")
    assert json.loads(create[3]) == {"name": "tiny-lm", "organization": "someone", "visibility": "private"}
    repo_calls = [auth for _, path, auth, _ in hub.requests if path.startswith(("/api/repos/", "/api/models/"))]
    assert repo_calls and set(repo_calls) == {f"Bearer {TOKEN}"}  # HF_TOKEN was used, and for the Hub only
    assert len(hub.commits) == 1
    header, files = hub.commits[0][0], committed_files(hub.commits[0])
    assert header["value"]["summary"] == "First upload"
    assert files == expected_files(exported)
    assert {"config.json", "model.safetensors", "README.md", "modeling_custom_lm.py",
            "configuration_custom_lm.py", "cache_custom_lm.py", "tokenizer.json", "generation_config.json"} <= set(files)
    assert commit.oid in commit.commit_url and len(commit.oid) == 40
    out, err = capfd.readouterr()
    assert TOKEN not in out + err + caplog.text


def test_push_to_a_branch_creates_it(online, exported):
    hub = online
    push(exported, "someone/tiny-lm", revision="v1", token=TOKEN)
    paths = [path for method, path, _, _ in hub.requests if method == "POST"]
    assert "/api/models/someone/tiny-lm/branch/v1" in paths
    assert paths.index("/api/models/someone/tiny-lm/branch/v1") < paths.index("/api/models/someone/tiny-lm/commit/v1")


def test_push_warns_when_card_names_another_repo(online, exported, caplog):
    push(exported, "someone/renamed", token=TOKEN)
    assert "re-export with `repo_id='someone/renamed'`" in caplog.text


def test_push_cli_reads_hf_token_and_never_prints_it(hub, exported, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf_home"),
           "HF_HUB_OFFLINE": "0"}
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from hf_custom_lm.cli import main; sys.exit(main(sys.argv[1:]))",
         "push", str(exported), "--repo-id", "someone/tiny-lm", "--commit-message", "From the CLI"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f'revision="{hub.oids[0]}"' in result.stdout
    assert TOKEN not in result.stdout + result.stderr
    assert hub.commits[0][0]["value"]["summary"] == "From the CLI"
    assert committed_files(hub.commits[0]) == expected_files(exported)


def test_push_refuses_bad_input(tmp_path, exported, monkeypatch):
    with pytest.raises(FileNotFoundError, match="hf-custom-lm export"):
        push(tmp_path, "someone/tiny-lm", token=TOKEN)
    with pytest.raises(ValueError, match="'tiny-lm'"):
        push(exported, "tiny-lm", token=TOKEN)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "empty_home" / "token"))
    with pytest.raises(LocalTokenNotFoundError, match="HF_TOKEN"):
        push(exported, "someone/tiny-lm")
