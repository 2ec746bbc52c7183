"""Property-based tests of every parser that reads operator or server input.

Whatever the input, each gives a value or a PepError (one line, an exit code), never another
exception: the env file, the settings' values, the journal loader and `status`, FCC's output
lines, and the checks of the server's identity answer.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hypothesis")  # the dev extra; an image's ptest brings python3-hypothesis

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pep_agent import report, state
from pep_agent.errors import PepError
from pep_agent.exit_codes import Exit
from pep_agent.gateway.fcc import exchange_hint, parse_fcc_address
from pep_agent.gateway.identity import check_response
from pep_agent.settings.config import Settings, load_settings
from pep_agent.settings.envfile import decode_env_file, env_name, parse_env_file
from pep_agent.settings.paths import Paths
from pep_agent.settings.serials import validate_serial

BOUNDED = settings(max_examples=200, deadline=None, database=None)

FIELD_NAMES = sorted(f.name for f in fields(Settings) if f.name != "root")
# Text an operator types or a careless editor saves: any character, some of them likely.
# Any character UTF-8 can encode: codec= on hypothesis 6.72 and later; the ones before it
# (kirkstone's ptest has 6.39.5) say the same as "every category but surrogates".
ANY_CHAR = (st.characters(codec="utf-8")
            if "codec" in inspect.signature(st.characters).parameters
            else st.characters(blacklist_categories=("Cs",)))
FRAGMENTS = st.text(ANY_CHAR, max_size=8) | st.sampled_from(
    [*"=\"'#; \t\r\n\\$\x00", "export ", "PEP_SERIAL", "PEP_HTTP_TIMEOUT", "1e300", "nan",
     "-1", "0", "10s", "GW-1", "Successfully completed factory flow",
     " Client IP Address and Port :  ", "10.0.0.1:4000"])
TEXT = st.lists(FRAGMENTS, max_size=8).map("".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=6),
    max_leaves=30)
JOURNAL_KEYS = st.sampled_from(sorted({*state.FIELDS, *report.KEYS, "error", "steps"}))


def one_line(err: PepError) -> None:
    assert err.message and "\n" not in err.message
    assert isinstance(err.code, Exit)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("root")
    (path / "etc/default").mkdir(parents=True)
    (path / "userdata/pep-agent").mkdir(parents=True)
    yield path


@BOUNDED
@given(st.binary(max_size=300) | TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_env_file_bytes_give_settings_or_a_one_line_error(root: Path, data: bytes) -> None:
    (root / "etc/default/pep-agent").write_bytes(data)
    try:
        got = load_settings({"root": root}, {})
    except PepError as e:
        one_line(e)
        assert str(root / "etc/default/pep-agent") in e.message or e.code == Exit.SERIAL
    else:
        assert isinstance(got, Settings)


@BOUNDED
@given(TEXT)
def test_env_file_text_parses_or_names_its_line(text: str) -> None:
    try:
        values = parse_env_file(decode_env_file(text.encode("utf-8", "surrogatepass"), "f"), "f")
    except PepError as e:
        one_line(e)
        assert e.message.startswith("f line ")
    else:
        assert all(isinstance(v, str) and n >= 1 for v, n in values.values())


@BOUNDED
@given(st.sampled_from(FIELD_NAMES), TEXT | st.floats().map(str) | st.integers().map(str))
def test_any_value_of_any_setting_is_typed_or_refused(root: Path, name: str, value: str) -> None:
    (root / "etc/default/pep-agent").write_bytes(b"")
    try:
        got = load_settings({"root": root}, {env_name(name): value})
    except PepError as e:
        one_line(e)
    else:
        number = getattr(got, name)
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            # What reaches a deadline, a sleep or a socket timeout is finite and bounded.
            assert math.isfinite(number) and 0 <= number <= 7 * 24 * 3600


@BOUNDED
@given(st.sampled_from(["http_timeout", "verify_timeout", "server_deadline", "retry_cap"]),
       st.floats() | st.integers())
def test_numbers_from_options_are_checked_like_text(root: Path, name: str,
                                                    value: float) -> None:
    (root / "etc/default/pep-agent").write_bytes(b"")
    try:
        got = load_settings({"root": root, name: value}, {})
    except PepError as e:
        one_line(e)
    else:
        assert 0 <= getattr(got, name) <= 7 * 24 * 3600


@BOUNDED
@given(TEXT)
def test_serial_rule(text: str) -> None:
    try:
        serial = validate_serial(text, "test")
    except PepError as e:
        one_line(e)
        assert e.code == Exit.SERIAL
    else:
        assert serial == serial.strip() and 0 < len(serial) <= 64
        assert validate_serial(f" {serial} ", "test") == serial


def _status_of(root: Path) -> None:
    doc = report.status_document(Paths(root))
    assert isinstance(doc["steps"], dict)
    assert isinstance(report.human(doc), str)
    json.dumps(doc, allow_nan=False)  # valid JSON for factory tools, whatever was read
    assert report.exit_code(doc["state"]) in (0, 30, 31, 32, 33)


@BOUNDED
@given(st.dictionaries(JOURNAL_KEYS, JSON, max_size=12) | JSON)
@example({"error": {"": math.inf}})  # found by this test: NaN/Infinity in `status --json`
@example({"steps": {"x": {"duration_s": 1, "other": math.nan}}})
def test_any_journal_json_gives_a_status(root: Path, data: Any) -> None:
    (root / "userdata/pep-agent/state.json").write_text(json.dumps(data))
    loaded = state.load(root / "userdata/pep-agent/state.json")
    assert isinstance(loaded, dict)
    assert state.checked(loaded) == loaded  # the types are what readers expect
    _status_of(root)


@BOUNDED
@given(st.binary(max_size=200))
def test_any_journal_bytes_give_a_status(root: Path, data: bytes) -> None:
    (root / "userdata/pep-agent/state.json").write_bytes(data)
    _status_of(root)


@BOUNDED
@given(TEXT)
def test_fcc_address_line(line: str) -> None:
    try:
        found = parse_fcc_address(line)
    except PepError as e:
        one_line(e)
        return
    if found is not None:
        ip, port = found
        assert all(0 <= int(o) <= 255 for o in ip.split(".")) and 0 < port < 65536


@BOUNDED
@given(st.lists(TEXT, max_size=20), st.none() | st.integers(-255, 255))
def test_fcc_exchange_hint_is_one_line_and_honest(lines: list[str], status: int | None) -> None:
    hint = exchange_hint(lines, status)
    assert hint and "\n" not in hint and "resumes" in hint
    completed = any("Successfully completed factory flow" in ln for ln in lines)
    assert ("did not complete" in hint) == (not completed and not any(
        "Successfully processed comm message" in ln for ln in lines))


@BOUNDED
@given(st.dictionaries(st.sampled_from(["serialNumber", "enrollmentID", "x"]) | st.text(),
                       JSON, max_size=6), st.text(min_size=1, max_size=10))
def test_identity_answer_checks(data: dict[str, Any], serial: str) -> None:
    try:
        enrollment = check_response(data, serial)
    except PepError as e:
        one_line(e)
        assert e.code == Exit.BAD_RESPONSE
    else:
        assert data["serialNumber"] == serial and enrollment.strip()
