"""The options several commands share, each defined once (same flags and help everywhere).

No side effects. Defaults are None so that PEP_* variables and the env file decide when an
option is not given.
"""


from typing import Any

from pep_agent.cli.app import option


def server_option() -> Any:
    return option(None, "--server",
                  help="pep server URL [PEP_SERVER_URL, default http://localhost:5151]")


def serial_option() -> Any:
    return option(None, "--serial", "-s", help="Serial number of the gateway [PEP_SERIAL]")
