"""The reference pep-cli's commands as real processes against the simulated server and FCC.

Also: the same requests as the reference CLI's curl commands (compared as the server decodes
them, against a recording server on loopback), https with a pinned CA, the exit codes of
every HTTP failure class, and journald sealing inside a private mount namespace.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from pep_agent.sim.query import identity_query, parse_query
from tests.agentprocs import AGENT, agent_env, free_port, run_agent
from tests.loopback import Handler, LoopbackServer, make_pki
from tests.simprocs import SimFcc, SimServer

TRICKY = "LINE 7/GW+001,rev=2"
SERIALS = [TRICKY, "O'Neil: 2.a-b", "a=b+c d", 'say "hi"', "PLAIN-5"]
HEADER = ('"enrollmentID","serialNumber","gatewayServicesAddress","apiAddress",'
          '"hardwareVersion","radioConfig","ledConfig","category","deployed","createdAt"\n')
JQ_FILTER = (
    '["enrollmentID","serialNumber","gatewayServicesAddress","apiAddress","hardwareVersion",'
    '"radioConfig","ledConfig","category","deployed","createdAt"], (.results[] | '
    "[.enrollmentID, .serialNumber,.gatewayServicesAddress,.apiAddress,.hardwareVersion,"
    ".radioConfig,.ledConfig,.category,.deployed,.createdAt]) | @csv")


def pep(*args: str, cwd: Path, wrap: tuple[str, ...] = (), timeout: float = 90,
        **env: str) -> subprocess.CompletedProcess[str]:
    """Run pep-agent in cwd with PEP_ROOT in cwd (unless given), so no host env file is read."""
    full_env = agent_env(**{"PEP_ROOT": str(cwd / "root"), **env})
    return subprocess.run([*wrap, *AGENT, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def provision_one(work: Path, server: SimServer, fcc: SimFcc, serial: str,
                  *more: str) -> subprocess.CompletedProcess[str]:
    assert fcc.ip and fcc.port
    return pep("get-one-identity", "-s", serial, "-i", fcc.ip, "-p", str(fcc.port),
               "--server", server.url, *more, cwd=work)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def test_identity_then_lookups(work: Path, server: SimServer,
                               sim_fcc: Callable[..., SimFcc]) -> None:
    fcc = sim_fcc()
    out = provision_one(work, server, fcc, TRICKY)
    assert out.returncode == 0, out.stderr
    ident = work / "identity.json"
    assert stat.S_IMODE(ident.stat().st_mode) == 0o600
    data = json.loads(ident.read_text())
    assert data["serialNumber"] == TRICKY and data["deployed"] is True
    assert data["hardwareVersion"] == "izuma-edge-gateway" and data["category"] == "production"
    assert len(data["enrollmentID"]) == 97
    assert "identity.json" in out.stdout and "gatewayServicesAddress" not in out.stdout
    assert fcc.wait_exit(30) == 0  # FCC took the injection and ended as the real one does

    got = pep("get-enrollment-id", "-s", TRICKY, "--server", server.url, cwd=work)
    assert (got.returncode, got.stdout, got.stderr) == (0, data["enrollmentID"] + "\n", "")
    key = pep("get-verification-key", "--serial", TRICKY, "--server", server.url, cwd=work)
    assert (key.returncode, key.stdout) == (0, "verification-key-does-not-exist\n")
    # PEP_SERVER_URL and PEP_SERIAL stand in for the options.
    env_only = pep("get-enrollment-id", cwd=work, PEP_SERVER_URL=server.url,
                   PEP_SERIAL=TRICKY)
    assert env_only.stdout == got.stdout


def test_identity_options_output_and_show(work: Path, server: SimServer,
                                          sim_fcc: Callable[..., SimFcc]) -> None:
    out = provision_one(work, server, sim_fcc(), "GW-OPTS", "-a", "https://api.example",
                        "-g", "https://gw.example", "-w", "rev B/2+x", "-r", "02", "-l", "02",
                        "-c", "developer", "-o", "sub/id.json", "--show")
    assert out.returncode == 0, out.stderr
    data = json.loads((work / "sub/id.json").read_text())
    assert json.loads(out.stdout) == data
    assert (data["apiAddress"], data["gatewayServicesAddress"], data["hardwareVersion"],
            data["radioConfig"], data["ledConfig"], data["category"]) == (
        "https://api.example", "https://gw.example", "rev B/2+x", "02", "02", "developer")
    assert not (work / "identity.json").exists()


def test_paging_across_pages_and_csv_export(work: Path, server: SimServer,
                                            sim_fcc: Callable[..., SimFcc]) -> None:
    for serial in SERIALS:
        out = provision_one(work, server, sim_fcc(), serial)
        assert out.returncode == 0, out.stderr
    everything = pep("list-enrollment-ids", "-l", "2", "-o", "ASC", "--all", "-e", "csv",
                     "-f", "gw", "--server", server.url, cwd=work)
    assert everything.returncode == 0, everything.stderr
    assert "(5 records, 4 pages)" in everything.stdout
    doc = json.loads((work / "gw.json").read_text())
    records = doc["results"]
    assert [r["serialNumber"] for r in records] == SERIALS
    assert doc["total_count"] == 5
    log = server.get("/v3/requestLog").json()
    pages = [e["url"] for e in log if e["url"].startswith("/v3/enrollment-ids")]
    assert len(pages) == 4  # three pages with records, then the empty one

    # The CSV, written out by hand from jq's @csv rules for these serials.
    rows = ['"O\'Neil: 2.a-b"', '"a=b+c d"', '"say ""hi"""', '"PLAIN-5"']
    rows.insert(0, f'"{TRICKY}"')
    expected = HEADER + "".join(
        f'"{r["enrollmentID"]}",{quoted},"https://gateways.us-east-1.mbedcloud.com",'
        f'"https://api.us-east-1.mbedcloud.com","izuma-edge-gateway","00","01","production",'
        f'true,{r["createdAt"]}\n' for r, quoted in zip(records, rows))
    assert (work / "gw.csv").read_bytes() == expected.encode()
    if shutil.which("jq"):
        jq = subprocess.run(["jq", "-r", JQ_FILTER, str(work / "gw.json")],
                            capture_output=True, check=True)
        assert jq.stdout == expected.encode()

    # One page at a time, continuing with -t, as the reference CLI pages.
    first = pep("list-enrollment-ids", "-l", "2", "-o", "asc", "--server", server.url,
                cwd=work)
    assert first.returncode == 0, first.stderr
    page1 = json.loads((work / "enrollment_ids_list.json").read_text())
    assert [r["serialNumber"] for r in page1["results"]] == SERIALS[:2]
    assert not (work / "enrollment_ids_list.csv").exists()
    nxt = pep("list-enrollment-ids", "-l", "2", "-o", "ASC", "-t", page1["results"][-1]["_id"],
              "-f", "p2", "--server", server.url, cwd=work)
    assert nxt.returncode == 0, nxt.stderr
    page2 = json.loads((work / "p2.json").read_text())
    assert [r["serialNumber"] for r in page2["results"]] == SERIALS[2:4]
    assert page2 == server.get("/v3/enrollment-ids", limit=2, order="ASC",
                                   last=page1["results"][-1]["_id"]).json()
    newest = pep("list-enrollment-ids", "-l", "1", "-f", "d", "--server", server.url,
                 cwd=work)
    assert newest.returncode == 0
    assert json.loads((work / "d.json").read_text())["results"][0]["serialNumber"] == "PLAIN-5"


def test_http_failures_have_their_exit_codes(work: Path, server: SimServer,
                                             sim_fcc: Callable[..., SimFcc]) -> None:
    assert provision_one(work, server, sim_fcc(), "GW-TWICE").returncode == 0
    (work / "identity.json").unlink()
    again = pep("get-one-identity", "-s", "GW-TWICE", "-i", "127.0.0.1", "-p", "9",
                "--server", server.url, cwd=work)
    assert again.returncode == 15, again.stderr
    assert "already provisioned" in again.stderr and not (work / "identity.json").exists()
    no_fcc = pep("get-one-identity", "-s", "GW-NOFCC", "-i", "127.0.0.1", "-p",
                 str(free_port()), "--server", server.url, cwd=work)
    assert no_fcc.returncode == 16 and "FCC" in no_fcc.stderr
    missing = pep("get-enrollment-id", "-s", "nobody", "--server", server.url, cwd=work)
    assert (missing.returncode, missing.stdout) == (24, "")
    assert "not found" in missing.stderr
    down = pep("get-verification-key", "-s", "x", "--server",
               f"http://127.0.0.1:{free_port()}", cwd=work)
    assert down.returncode == 14 and "cannot reach" in down.stderr
    for args in (["get-enrollment-id"], ["list-enrollment-ids", "-l", "0"],
                 ["list-enrollment-ids", "-o", "UP"], ["list-enrollment-ids", "-e", "xml"],
                 ["get-one-identity", "-s", "x", "-i", "127.0.0.1"]):
        usage = pep(*args, "--server", server.url, cwd=work)
        assert usage.returncode == 2, (args, usage.stderr)
    assert not list(work.glob("enrollment_ids_list*"))


# --- a recording server: what the requests look like once the server has decoded them ----

class Recorder(LoopbackServer):
    """Records every request; answers as the server would, `identity_body` if set."""

    identity_body: bytes | None = None

    def decoded(self, route: str) -> list[dict[str, str]]:
        return [parse_query(p.partition("?")[2]) for p in self.paths
                if p.partition("?")[0] == route]


class RecordingHandler(Handler):
    server: Recorder

    def get(self) -> None:
        route, _, raw = self.path.partition("?")
        ctype, body = "text/plain", b"E-123"
        if route == "/v3/identity":
            serial = identity_query(parse_query(raw)).serialNumber
            ctype = "application/json"
            body = self.server.identity_body or json.dumps(
                {"serialNumber": serial, "enrollmentID": "E" * 97}).encode()
        elif route == "/v3/enrollment-ids":
            ctype = "application/json"
            body = json.dumps({"_links": {"self": {"href": route}}, "results": [],
                               "total_count": 0, "limit": 50, "order": "DESC"}).encode()
        self.answer(200, body, ctype)


@pytest.fixture
def start_recorder(loopback: Callable[..., LoopbackServer]) -> Callable[..., Recorder]:
    """Starts recording servers (https with an ssl context); all stopped after the test."""
    return functools.partial(loopback, RecordingHandler, kind=Recorder)


@pytest.fixture
def recorder(start_recorder: Callable[..., Recorder]) -> Recorder:
    return start_recorder()


def curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "-o", os.devnull, *args], check=True, timeout=30,
                   stdin=subprocess.DEVNULL)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("serial", [TRICKY, "O'Neil: 2.a-b", "a=b+c d", "x,y/z:1"])
def test_requests_match_the_reference_cli(work: Path, recorder: Recorder, serial: str) -> None:
    url = recorder.url
    assert pep("get-one-identity", "-s", serial, "-i", "10.1.2.3", "-p", "4567", "-w", "hw-2",
               "-c", "developer", "--server", url, cwd=work).returncode == 0
    # get-one-identity.sh: fixed fields appended raw, the rest through --data-urlencode.
    curl("-G", "--data-urlencode", f"serialNumber={serial}",
         "--data-urlencode", "apiAddress=https://api.us-east-1.mbedcloud.com",
         "--data-urlencode", "gatewayServicesAddress=https://gateways.us-east-1.mbedcloud.com",
         "--data-urlencode", "verificationKey=verification-key-does-not-exist",
         f"{url}/v3/identity?&hardwareVersion=hw-2&radioConfig=00&ledConfig=01"
         "&category=developer&ip=10.1.2.3&port=4567")
    ours, reference = recorder.decoded("/v3/identity")
    assert ours == reference and ours["serialNumber"] == serial

    for what, command in (("enrollment-id", "get-enrollment-id"),
                          ("verification-key", "get-verification-key")):
        out = pep(command, "-s", serial, "--server", url, cwd=work)
        assert (out.returncode, out.stdout) == (0, "E-123\n")
        curl("-G", "--data-urlencode", f"serialNumber={serial}", f"{url}/v3/{what}")
        ours, reference = recorder.decoded(f"/v3/{what}")
        assert ours == reference == {"serialNumber": serial}

    assert pep("list-enrollment-ids", "--server", url, cwd=work).returncode == 0
    assert pep("list-enrollment-ids", "-l", "7", "-o", "ASC", "-t", "65f0c0ffee", "--server",
               url, cwd=work).returncode == 0
    curl(f"{url}/v3/enrollment-ids?order=DESC&limit=50&last=")
    curl(f"{url}/v3/enrollment-ids?order=ASC&limit=7&last=65f0c0ffee")
    lists = recorder.decoded("/v3/enrollment-ids")
    assert lists[0] == lists[2] and lists[1] == lists[3]


def test_debug_logs_mask_the_verification_key(work: Path, recorder: Recorder) -> None:
    out = pep("get-one-identity", "-s", "GW", "-i", "127.0.0.1", "-p", "1", "--debug",
              "--server", recorder.url, cwd=work)
    assert out.returncode == 0, out.stderr
    assert "GET /v3/identity?" in out.stderr  # the HTTP library's own debug line
    assert "verificationKey=[redacted]" in out.stderr
    assert "verification-key-does-not-exist" not in out.stderr


def test_non_json_identity_is_exit_17(work: Path, recorder: Recorder) -> None:
    recorder.identity_body = b"<html>proxy login</html>"
    out = pep("get-one-identity", "-s", "GW", "-i", "127.0.0.1", "-p", "1", "--server",
              recorder.url, cwd=work)
    assert out.returncode == 17 and "non-JSON" in out.stderr
    assert not (work / "identity.json").exists()


# --- https ----------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_https_with_pinned_ca_and_loud_insecure(work: Path,
                                               start_recorder: Callable[..., Recorder]) -> None:
    ca, cert, key = make_pki(work)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    url = start_recorder(tls=context).url
    assert url.startswith("https://")

    pinned = pep("get-enrollment-id", "-s", "GW", "--server", url, "--ca-cert", str(ca),
                 cwd=work)
    assert (pinned.returncode, pinned.stdout, pinned.stderr) == (0, "E-123\n", ""), pinned.stderr
    by_env = pep("get-enrollment-id", "-s", "GW", cwd=work, PEP_SERVER_URL=url,
                 PEP_CA_CERT=str(ca))
    assert by_env.returncode == 0
    unpinned = pep("get-enrollment-id", "-s", "GW", "--server", url, cwd=work)
    assert unpinned.returncode == 14 and "TLS" in unpinned.stderr
    for insecure in (pep("get-enrollment-id", "-s", "GW", "--server", url, "--insecure",
                         cwd=work),
                     pep("get-enrollment-id", "-s", "GW", "--server", url, cwd=work,
                         PEP_INSECURE="true")):
        assert insecure.returncode == 0 and insecure.stdout == "E-123\n"
        assert "warning: --insecure" in insecure.stderr
    absent = pep("get-enrollment-id", "-s", "GW", "--server", url, "--ca-cert",
                 str(work / "absent.pem"), cwd=work)
    assert absent.returncode == 3


# --- journald sealing (-k), inside a private mount namespace ---------------------------

def _namespace_ok() -> bool:
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("journalctl")):
        return False
    if not Path("/var/log/journal").is_dir() or not Path("/etc/machine-id").is_file():
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True, check=False)
    return probe.returncode == 0


def journal_namespace(persistent: bool) -> tuple[str, ...]:
    """Run the agent where /var/log/journal is a fresh tmpfs: the host's is never touched.

    /etc/default is an empty tmpfs too, so that the agent, running with root / (the only root
    where it runs journalctl), reads no env file of the host.
    """
    mkdir = 'mkdir -p "/var/log/journal/$(cat /etc/machine-id)" && ' if persistent else ""
    return ("unshare", "-m", "--propagation", "private", "sh", "-c",
            "mount -t tmpfs tmpfs /var/log/journal && mount -t tmpfs tmpfs /etc/default && "
            f'{mkdir}exec "$@"', "sh")


@pytest.mark.skipif(not _namespace_ok(), reason="needs root, unshare and journalctl")
def test_fss_sends_the_verification_key(work: Path, server: SimServer,
                                        sim_fcc: Callable[..., SimFcc]) -> None:
    fcc = sim_fcc()
    assert fcc.ip and fcc.port
    out = pep("get-one-identity", "-s", "GW-FSS", "-i", fcc.ip, "-p", str(fcc.port), "-k",
              "-e", "15min", "-v", "--debug", "--server", server.url, cwd=work,
              wrap=journal_namespace(persistent=True), PEP_ROOT="/")
    assert out.returncode == 0, out.stderr
    key = pep("get-verification-key", "-s", "GW-FSS", "--server", server.url, cwd=work)
    value = key.stdout.strip()
    assert key.returncode == 0 and value.endswith("-" + format(15 * 60 * 10**6, "x"))
    seed = value.split("/")[0]  # the secret part, also as it looks URL-encoded
    assert seed not in out.stdout + out.stderr
    assert seed not in (work / "identity.json").read_text()

    failed = pep("get-one-identity", "-s", "GW-FSS-2", "-i", fcc.ip, "-p", str(fcc.port), "-k",
                 "--server", server.url, cwd=work, wrap=journal_namespace(persistent=False),
                 PEP_ROOT="/")
    assert failed.returncode == 23, failed.stderr
    assert "cannot seal the journal" in failed.stderr
    asked = [e["url"] for e in requests.get(server.url + "/v3/requestLog", timeout=10).json()]
    assert not any("GW-FSS-2" in u for u in asked)  # no request without the key


# --- progress: rich on a terminal only --------------------------------------------------

def _typer_imports_rich() -> bool:
    probe = "import sys, typer; print('rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout.strip() == "True"


def test_progress_only_on_a_terminal(work: Path, recorder: Recorder) -> None:
    import pty

    args = ("list-enrollment-ids", "--all", "--server", recorder.url)
    env = agent_env(PEP_ROOT=str(work / "root"))
    plain = subprocess.run([AGENT[0], "-X", "importtime", *AGENT[1:], *args], cwd=work,
                           env=env, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, check=False)
    assert plain.returncode == 0, plain.stderr
    # Without rich (Yocto kirkstone ships none) the terminal gets a plain counter instead.
    has_rich = importlib.util.find_spec("rich") is not None
    if has_rich and _typer_imports_rich():
        # Some typer releases (bookworm's 0.7 among them) import rich by themselves when it is
        # installed: what is checked here, that the agent's own code does not, cannot be seen.
        pytest.skip("this typer imports rich by itself")
    if has_rich:
        assert not [ln for ln in plain.stderr.splitlines() if ln.rstrip().endswith(" rich")]
    assert "fetch" not in plain.stderr

    leader, follower = pty.openpty()
    try:
        child = subprocess.run([*AGENT, *args], cwd=work, stdout=subprocess.PIPE,
                               stderr=follower, stdin=subprocess.DEVNULL, timeout=60,
                               env=env, check=False)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert child.returncode == 0
    assert (b"fetching enrollment ids" if has_rich else b"fetched ") in shown


def test_get_one_identity_checks_its_output_before_asking(tmp_path: Path,
                                                          server: SimServer) -> None:
    (tmp_path / "a-file").write_text("")
    out = run_agent("get-one-identity", "--server", server.url, "-s", "GW-OUT", "-i",
                    "127.0.0.1", "-p", "1", "-o", str(tmp_path / "a-file/identity.json"))
    assert out.returncode == 29, out.stderr
    assert server.get("/v3/enrollment-id", serialNumber="GW-OUT").status_code == 404
