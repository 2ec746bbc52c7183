"""The identity document: the answer's checks, the errors
that say what the server's record is, the saved answer, and the installed identity.json (read
here and nowhere else).

Side effects: `save_response` writes the server's answer durably with mode 0600;
`load_response` and `read_installed` read files.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pep_agent.errors import AlreadyProvisionedError, BadResponseError
from pep_agent.system.fsutil import atomic_write

NO_VERIFICATION_KEY = "verification-key-does-not-exist"  # what the reference CLI sends


def check_response(data: dict[str, Any], serial: str) -> str:
    """The enrollment id, after checking the answer is an identity for `serial`."""
    got = data.get("serialNumber")
    if not isinstance(got, str):
        raise BadResponseError("the server's identity answer has no serialNumber")
    if got != serial:
        raise BadResponseError(f"the server answered for serial {got!r}, not {serial!r}")
    enrollment = data.get("enrollmentID")
    if not isinstance(enrollment, str) or not enrollment.strip():
        raise BadResponseError("the server's identity answer has no enrollmentID")
    return enrollment


# The query fields the real server echoes in its 200 answer: all that rebuilding it needs.
# Not ip/port (FCC's, gone by then), and never the verification key (a secret).
ECHOED = ("serialNumber", "hardwareVersion", "radioConfig", "ledConfig", "category",
          "apiAddress", "gatewayServicesAddress")


def rebuild_fields(query: dict[str, str]) -> dict[str, str]:
    """What the journal keeps of an identity request, to rebuild its answer after a loss."""
    return {k: query[k] for k in ECHOED}


# A real one is "A-" and 32 hex pairs joined by ':'; anything with spaces, quotes or markup
# is a proxy's page or a server that is not a pep server.
_ENROLLMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,255}")


def check_enrollment_id(text: str, serial: str) -> str:
    """GET /v3/enrollment-id's answer, after checking it looks like an enrollment id."""
    if not _ENROLLMENT_ID.fullmatch(text):
        raise BadResponseError(f"the server's record of serial {serial} holds no usable "
                               "enrollment id")
    return text


def rebuild_identity(query: dict[str, str], enrollment_id: str, now: float) -> dict[str, Any]:
    """A 200 answer rebuilt from the query the server received and its record's enrollment id.

    The real server echoes the ECHOED query fields, adds cloudAddress, deployed, enrollmentID
    and createdAt (ms), and never returns the verification key.
    """
    data: dict[str, Any] = {k: query[k] for k in ECHOED}
    data.update(cloudAddress=query["gatewayServicesAddress"], deployed=True,
                enrollmentID=enrollment_id, createdAt=int(now * 1000))
    return data


def already_provisioned(serial: str) -> AlreadyProvisionedError:
    """409, and the record it stands for was not read: it may be a working gateway's, or one
    being injected now, so the hint says how to look, not to remove it."""
    return AlreadyProvisionedError(
        f"serial {serial} is already provisioned on the server",
        hint=f"look at its record: `pep-agent get-enrollment-id -s {shlex.quote(serial)}` "
             "prints an enrollment id when another gateway holds that identity (give this "
             "gateway its own serial; removing the record would take the identity from that "
             "gateway); \"not found\" means a record the server never finished, to be removed "
             f"only once no gateway with serial {serial} is being provisioned")


def unfinished_record(serial: str, watched_s: float) -> AlreadyProvisionedError:
    """409, and a record that stayed without an enrollment id while an injection could have
    ended: a server restarted during an injection leaves one, but so does a gateway with the
    same serial being injected now, too slowly to show. The agent cannot tell them apart."""
    return AlreadyProvisionedError(
        f"the pep server holds an unfinished record for serial {serial} (409 to the identity "
        f"request; GET /v3/enrollment-id still answered 404 after {watched_s:g} s): a server "
        "restarted during an injection leaves one, and so does another gateway with this "
        "serial being provisioned now",
        hint=f"first make sure that no other gateway with serial {serial} is on the line or "
             "being provisioned, and that the record is older than an injection takes (see "
             f"its createdAt on the server); only then remove the record of serial {serial} "
             "on the pep server and run `pep-agent provision` again")


def deployed_elsewhere(serial: str, enrollment: str) -> AlreadyProvisionedError:
    return AlreadyProvisionedError(
        f"the pep server holds a deployed record for serial {serial} (enrollment id "
        f"{enrollment}) from another gateway: a working gateway holds that identity",
        hint=f"serial {serial} is a duplicate: give this gateway its own serial (--serial or "
             f"PEP_SERIAL); removing the record would take the identity from the gateway that "
             "holds it")


def save_response(path: Path, data: dict[str, Any]) -> None:
    """The commit point: after this, a rerun installs this answer and never asks again."""
    atomic_write(path, identity_json(data), mode=0o600)


def load_response(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise BadResponseError(f"the saved server response {path} is unreadable",
                               hint="remove it with `pep-agent reprovision`") from None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Installed:
    """What the agent reads of an installed identity.json: nothing else of it is kept."""

    serial: str
    enrollment: str | None


def read_installed(path: Path) -> Installed | None:
    """The installed identity.json's serial number and enrollment id; None when the file is
    missing, unreadable or names no serial (a text, stripped, not empty)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    serial = doc.get("serialNumber") if isinstance(doc, dict) else None
    if not isinstance(serial, str) or not serial.strip():
        return None
    enrollment = doc.get("enrollmentID")
    return Installed(serial.strip(), enrollment if isinstance(enrollment, str) else None)


def identity_json(data: dict[str, Any]) -> bytes:
    """The server's answer as the reference CLI saves it: identity.json, and the saved copy."""
    return (json.dumps(data, indent=2) + "\n").encode()
