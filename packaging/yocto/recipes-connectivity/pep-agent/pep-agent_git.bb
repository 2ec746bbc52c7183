SUMMARY = "pep-agent: first-boot provisioning of Izuma/Pelion Edge gateways"
DESCRIPTION = "Runs FCC, asks the pep server for the gateway's identity, installs \
identity.json and the mcc_config credentials, reboots into edge-core, and verifies the \
cloud connection on the next boot. Ships the pep server and FCC simulators for QA."
SECTION = "console/network"
# Set to the project's licence once it has one; CLOSED skips the licence checks.
LICENSE = "CLOSED"

# Point these at the repository (and revision) to build, e.g. in local.conf:
#   PEP_AGENT_GIT = "git://git.example.com/pep-agent.git;protocol=https;branch=main"
#   SRCREV:pn-pep-agent = "<commit>"
PEP_AGENT_GIT ??= ""

python () {
    if not d.getVar('PEP_AGENT_GIT'):
        raise bb.parse.SkipRecipe("set PEP_AGENT_GIT to the pep-agent repository (see README.md)")
}

SRC_URI = " \
    ${PEP_AGENT_GIT} \
    file://pep-agent.default \
    file://run-ptest \
"
SRCREV ??= "${AUTOREV}"
PV = "0.1.0+git${SRCPV}"
S = "${WORKDIR}/git"

# The project's pyproject.toml uses the setuptools build backend with PEP 621 metadata, which
# needs setuptools >= 61 (see README.md in this layer about kirkstone's setuptools).
inherit python_setuptools_build_meta systemd ptest

SYSTEMD_SERVICE:${PN} = "pep-agent.service pep-agent-verify.service"
# Enabled in the image: the units skip themselves once provisioned/verified.
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_install:append () {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/pep-agent.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/pep-agent-verify.service ${D}${systemd_system_unitdir}/

    install -d ${D}${sysconfdir}/default
    install -m 0644 ${WORKDIR}/pep-agent.default ${D}${sysconfdir}/default/pep-agent

    install -d ${D}${docdir}/${PN}
    install -m 0644 ${S}/README.md ${D}${docdir}/${PN}/
    if [ -d ${S}/example-scripts ]; then
        cp -R --no-preserve=ownership ${S}/example-scripts ${D}${docdir}/${PN}/
    fi
}

# The operator's settings survive package upgrades.
CONFFILES:${PN} = "${sysconfdir}/default/pep-agent"

do_install_ptest () {
    install -d ${D}${PTEST_PATH}/tests
    cp -R --no-preserve=ownership ${S}/tests/unit ${D}${PTEST_PATH}/tests/
    # Helpers the unit tests import from tests/.
    for helper in ${S}/tests/*.py; do
        [ -e "$helper" ] && install -m 0644 "$helper" ${D}${PTEST_PATH}/tests/
    done
    if [ -d ${S}/tests/fixtures ]; then
        cp -R --no-preserve=ownership ${S}/tests/fixtures ${D}${PTEST_PATH}/tests/
    fi
    find ${D}${PTEST_PATH} -name __pycache__ -prune -exec rm -rf {} +
}

# Every module the agent imports (grep -rh '^ *\(import\|from\) ' pep_agent), mapped to
# kirkstone's split of the standard library, plus the third-party packages:
#   core: os sys re pathlib dataclasses enum typing signal stat struct errno subprocess
#         threading contextlib functools collections shutil ipaddress warnings types uuid
#   json, logging (logging), io (socket, tempfile), datetime, shell (shlex), fcntl (the run
#   lock), threading (queue), math (random), netclient (urllib.request, http.client,
#   secrets; also needed by requests), crypt (hashlib, the simulators' checksums), html,
#   netserver (http.server/socketserver for `pep-agent sim server`), sqlite3 (the server
#   simulator's records).
RDEPENDS:${PN} = " \
    python3-core \
    python3-crypt \
    python3-datetime \
    python3-fcntl \
    python3-html \
    python3-io \
    python3-json \
    python3-logging \
    python3-math \
    python3-netclient \
    python3-netserver \
    python3-shell \
    python3-sqlite3 \
    python3-threading \
    python3-cbor2 \
    python3-netifaces \
    python3-psutil \
    python3-requests \
    python3-systemd \
    python3-typer \
    python3-rich \
    python3-shellingham \
    python3-annotated-doc \
    systemd \
"

RDEPENDS:${PN}-ptest += "python3-pytest"
