"""The reference pep-cli's commands: get-one-identity, get-enrollment-id, get-verification-key,
list-enrollment-ids. Same short options and defaults as pep-cli; settings come from
load_settings, so PEP_* variables and the env file apply too.

Side effects: HTTP requests to the pep server; get-one-identity writes identity.json (0600)
and, with -k, regenerates journald's sealing keys; list-enrollment-ids writes its exports.
"""


import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from pep_agent import inventory
from pep_agent.cli.app import app, debug_option, handles_errors, option, root_option, setup_logs
from pep_agent.cli.options import serial_option, server_option
from pep_agent.errors import AlreadyProvisionedError, BadResponseError, UsageError
from pep_agent.gateway import identity as ident
from pep_agent.inventory import file_error
from pep_agent.settings.config import Settings, load_settings
from pep_agent.settings.identity_query import identity_query
from pep_agent.system.http import PepClient

# No `from __future__ import annotations` in the cli package: typer would eval() every string
# annotation at each start, which costs a run a few milliseconds.


# The options every command here shares.


def _ca_cert() -> Any:
    return option(None, "--ca-cert",
                  help="CA certificate that the https server must chain to [PEP_CA_CERT]")


def _insecure() -> Any:
    return option(False, "--insecure",
                  help="Do not verify the server's TLS certificate (never in production).")


def _verbose() -> Any:
    return option(False, "--verbose", "-v",
                  help="Show each request on stderr (secrets are never shown).")


def _settings(**cli: Any) -> Settings:
    # An absent flag is None, so that PEP_INSECURE or the env file decide.
    cli["insecure"] = True if cli.get("insecure") else None
    return load_settings(cli)


def _client(settings: Settings) -> PepClient:
    # On stderr, not the log: these commands log nothing without --verbose.
    return PepClient.from_settings(
        settings, warn=lambda text: print(f"pep-agent: warning: {text}", file=sys.stderr))


def _need_serial(settings: Settings) -> str:
    if not settings.serial:
        raise UsageError("no serial number: pass -s SERIAL (or set PEP_SERIAL)")
    return settings.serial


def _say(verbose: bool, text: str) -> None:
    if verbose:
        print(f"pep-agent: {text}", file=sys.stderr)


@app.command("get-one-identity")
@handles_errors
def get_one_identity(
    serial: Optional[str] = serial_option(),
    ip: Optional[str] = option(
        None, "--ip", "-i", help="IP address FCC listens on (its ' Client IP Address' line)"),
    port: Optional[int] = option(
        None, "--port", "-p", help="TCP port FCC listens on", min=1, max=65535),
    api_address: Optional[str] = option(
        None, "--api-address", "-a", help="Izuma cloud API URL [PEP_API_ADDRESS, default "
        "https://api.us-east-1.mbedcloud.com]"),
    gateway_services_address: Optional[str] = option(
        None, "--gateway-services-address", "-g", help="Gateway services URL "
        "[PEP_GATEWAY_SERVICES_ADDRESS, default https://gateways.us-east-1.mbedcloud.com]"),
    hardware_version: Optional[str] = option(
        None, "--hardware-version", "-w",
        help="Hardware version [PEP_HARDWARE_VERSION, default izuma-edge-gateway]"),
    radio_config: Optional[str] = option(
        None, "--radio-config", "-r", help="Radio configuration [PEP_RADIO_CONFIG, default 00]"),
    led_config: Optional[str] = option(
        None, "--led-config", "-l", help="Status LED configuration [PEP_LED_CONFIG, default 01]"),
    category: Optional[str] = option(
        None, "--category", "-c",
        help="production or developer [PEP_CATEGORY, default production]"),
    fss: bool = option(
        False, "--fss", "-k", help="Set up journald forward-secure sealing and send the "
        "verification key [PEP_FSS]"),
    fss_interval: Optional[str] = option(
        None, "--fss-interval", "-e", help="Sealing key change interval [PEP_FSS_INTERVAL, "
        "default 10s]"),
    output: Path = option(
        Path("identity.json"), "--output", "-o",
        help="Where to write the identity (default ./identity.json)"),
    show: bool = option(
        False, "--show",
        help="Also print the identity JSON (it holds production identity data)."),
    server: Optional[str] = server_option(), ca_cert: Optional[Path] = _ca_cert(),
    insecure: bool = _insecure(), verbose: bool = _verbose(),
    root: Optional[Path] = root_option(), debug: bool = debug_option(),
) -> None:
    """Ask the server to inject a running FCC and save the identity (the manual step)."""
    setup_logs(debug)
    settings = _settings(
        root=root, server_url=server, ca_cert=ca_cert, insecure=insecure, serial=serial,
        api_address=api_address, gateway_services_address=gateway_services_address,
        hardware_version=hardware_version, radio_config=radio_config, led_config=led_config,
        category=category, fss=True if fss else None, fss_interval=fss_interval)
    sn = _need_serial(settings)
    if not ip:
        raise UsageError("no FCC address: pass -i IP (FCC prints it as "
                         "' Client IP Address and Port :  IP:PORT')")
    if port is None:
        raise UsageError("no FCC port: pass -p PORT (FCC prints it after the IP address)")
    _check_writable(output)  # before the server deploys the serial: it answers only once
    client = _client(settings)
    key = ident.NO_VERIFICATION_KEY
    if settings.fss:
        # Here only: sealing runs journalctl through system/proc.py, which brings psutil;
        # the lookups, in this module too, must not pay for it.
        from pep_agent.system.sealing import setup_keys

        _say(verbose, f"setting up journald sealing keys (interval {settings.fss_interval})")
        key = setup_keys(settings.fss_interval, settings.paths)
    query = identity_query(settings, sn, ip, port, key)
    shown = " ".join(f"{k}={v!r}" for k, v in query.items() if k != "verificationKey")
    _say(verbose, f"GET {settings.server_url}/v3/identity {shown} "
                  f"verificationKey={'(the new sealing key)' if settings.fss else repr(key)}")
    try:
        data = client.identity(query)
    except AlreadyProvisionedError:
        raise ident.already_provisioned(sn) from None
    enrollment = ident.check_response(data, sn)
    try:
        ident.save_response(output, data)
    except OSError as e:
        raise file_error(output, e) from None
    if show:
        print(ident.identity_json(data).decode(), end="")
    print(f"identity of serial {sn} written to {output} (mode 0600); "
          f"enrollment id {enrollment}", file=sys.stderr if show else sys.stdout)


def _check_writable(output: Path) -> None:
    """Fail now, not after the server has deployed the serial, if `output` cannot be written."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output.parent, prefix=f".{output.name}."):
            pass
    except OSError as e:
        raise file_error(output, e) from None


def _lookup(what: str, serial: Optional[str], server: Optional[str], ca_cert: Optional[Path],
            insecure: bool, verbose: bool, root: Optional[Path]) -> None:
    settings = _settings(root=root, server_url=server, ca_cert=ca_cert, insecure=insecure,
                         serial=serial)
    sn = _need_serial(settings)
    client = _client(settings)
    _say(verbose, f"GET {settings.server_url}/v3/{what} serialNumber={sn!r}")
    fetch = client.enrollment_id if what == "enrollment-id" else client.verification_key
    value = fetch(sn)
    if not value:
        raise BadResponseError(f"the server answered with an empty {what.replace('-', ' ')}")
    print(value)


@app.command("get-enrollment-id")
@handles_errors
def get_enrollment_id(serial: Optional[str] = serial_option(),
                      server: Optional[str] = server_option(),
                      ca_cert: Optional[Path] = _ca_cert(), insecure: bool = _insecure(),
                      verbose: bool = _verbose(), root: Optional[Path] = root_option(),
                      debug: bool = debug_option()) -> None:
    """Print the enrollment id of a provisioned gateway, alone, for $(...)."""
    setup_logs(debug)
    _lookup("enrollment-id", serial, server, ca_cert, insecure, verbose, root)


@app.command("get-verification-key")
@handles_errors
def get_verification_key(serial: Optional[str] = serial_option(),
                         server: Optional[str] = server_option(),
                         ca_cert: Optional[Path] = _ca_cert(), insecure: bool = _insecure(),
                         verbose: bool = _verbose(), root: Optional[Path] = root_option(),
                         debug: bool = debug_option()) -> None:
    """Print the journald FSS verification key of a gateway, alone, for $(...)."""
    setup_logs(debug)
    _lookup("verification-key", serial, server, ca_cert, insecure, verbose, root)


@app.command("list-enrollment-ids")
@handles_errors
def list_enrollment_ids(
    limit: int = option(inventory.DEFAULT_LIMIT, "--limit", "-l",
                        help=f"Records per page, 1-1000 [{inventory.DEFAULT_LIMIT}]"),
    order: str = option("DESC", "--order", "-o", help="ASC or DESC [DESC]"),
    last: Optional[str] = option(
        None, "--last", "-t",
        help="Start after this record id (the last one of the previous page)"),
    export: str = option(
        "json", "--format", "-e", help="json, or csv for NAME.csv as well as NAME.json [json]"),
    name: str = option(
        inventory.DEFAULT_NAME, "--output", "-f",
        help=f"Output name without extension [{inventory.DEFAULT_NAME}]"),
    every_page: bool = option(
        False, "--all", help="Follow the 'next' links to the end and export everything."),
    server: Optional[str] = server_option(), ca_cert: Optional[Path] = _ca_cert(),
    insecure: bool = _insecure(), verbose: bool = _verbose(),
    root: Optional[Path] = root_option(), debug: bool = debug_option(),
) -> None:
    """Save the enrollment ids as NAME.json (and NAME.csv for the Portal's bulk upload)."""
    setup_logs(debug)
    limit = inventory.check_limit(limit)
    order = inventory.check_order(order)
    if export not in ("json", "csv"):
        raise UsageError(f"--format {export!r}: use json or csv")
    inventory.export_paths(name, csv=export == "csv")  # a bad name fails before any request
    settings = _settings(root=root, server_url=server, ca_cert=ca_cert, insecure=insecure)
    client = _client(settings)

    def first() -> dict[str, Any]:
        # The reference CLI always sends last=, empty when not given; so does this.
        _say(verbose, f"GET {settings.server_url}/v3/enrollment-ids "
                      f"limit={limit} order={order} last={last or ''}")
        return client.enrollment_ids(limit=limit, order=order, last=last or "")

    def follow(href: str) -> dict[str, Any]:
        _say(verbose, f"GET {href}")
        return client.follow(href)

    with _progress(enabled=every_page) as on_page:
        pages = inventory.collect(first, follow, every_page=every_page, on_page=on_page)
    doc = inventory.combine(pages)
    written = inventory.write_exports(name, doc, csv=export == "csv")
    count = len(inventory.page_results(doc))
    for path in written:
        kind = "CSV" if path.suffix == ".csv" else "JSON"
        print(f"{kind} output saved at {path} ({count} records"
              + (f", {len(pages)} pages)" if every_page else ")"))


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Optional[Callable[[int, int], None]]]:
    """A live "N records, P pages" line on a terminal's stderr; nothing otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    try:
        from rich.console import Console  # only on a terminal: keeps services light
    except ImportError:
        def plain(pages: int, records: int) -> None:
            print(f"\rfetched {records} records ({pages} pages)", end="", file=sys.stderr)

        try:
            yield plain
        finally:
            print(file=sys.stderr)
        return
    status = Console(stderr=True).status("fetching enrollment ids")
    status.start()
    try:
        yield lambda pages, records: status.update(
            f"fetching enrollment ids: {records} records, {pages} pages")
    finally:
        status.stop()
