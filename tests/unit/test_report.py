import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pep_agent import report
from pep_agent.paths import Paths
from tests.agentprocs import free_port


class _EdgeCore(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "connected", "endpoint-name": "SN-1",
                           "account-id": "acc", "internal-id": "id"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def edge_core_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EdgeCore)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/status"
    httpd.shutdown()
    httpd.server_close()


def test_edge_core_connection(edge_core_url: str) -> None:
    assert report.edge_core(edge_core_url) == {"status": "connected", "endpoint-name": "SN-1"}
    down = report.edge_core(f"http://127.0.0.1:{free_port()}/status")
    assert down["status"] == "unreachable" and "not answering" in down["detail"]


def test_document_of_a_failed_run(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    paths.state_dir.mkdir(parents=True)
    paths.journal.write_text(json.dumps({
        "state": "failed", "step": "request-identity", "serial": "SN-1", "attempt": 4,
        "error": {"code": 14, "name": "SERVER_UNREACHABLE", "message": "cannot reach x",
                  "hint": "check the URL"},
        "steps": {"preflight": {"status": "done", "duration_s": 0.01},
                  "request-identity": {"status": "failed", "duration_s": 2.0}}}))
    doc = report.status_document(paths)
    assert doc["state"] == "failed" and report.exit_code(doc["state"]) == 1
    assert doc["timings"]["agent_s"] == 0.01 and doc["edge_core"] is None
    text = report.human(doc)
    assert "cannot reach x (exit 14)" in text and "hint:          check the URL" in text


def test_states_map_to_cloud_init_like_codes(tmp_path: Path) -> None:
    assert report.status_document(Paths(tmp_path))["state"] == "not-started"
    assert [report.exit_code(s) for s in ("provisioned", "verified", "failed", "interrupted",
                                          "running", "not-started")] == [0, 0, 1, 1, 2, 2]


def test_a_reused_pid_does_not_look_like_a_running_agent(tmp_path: Path) -> None:
    import os

    from pep_agent.system.proc import process_start_time

    paths = Paths(tmp_path)
    paths.state_dir.mkdir(parents=True)
    me, started = os.getpid(), process_start_time(os.getpid())
    assert started is not None
    for pid_start, expected in ((started, "running"), (started - 1, "interrupted")):
        paths.journal.write_text(json.dumps({"state": "running", "pid": me,
                                             "pid_start": pid_start}))
        assert report.status_document(paths)["state"] == expected
