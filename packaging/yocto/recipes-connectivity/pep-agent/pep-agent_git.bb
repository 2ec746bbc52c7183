SUMMARY = "pep-agent: first-boot provisioning of Izuma/Pelion Edge gateways"
DESCRIPTION = "Runs FCC, asks the pep server for the gateway's identity, installs \
identity.json and the mcc_config credentials, reboots into edge-core, and verifies the \
cloud connection on the next boot. Ships the pep server and FCC simulators for QA."
SECTION = "console/network"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# Point this at the repository, e.g. in local.conf:
#   PEP_AGENT_GIT = "git://git.example.com/pep-agent.git;protocol=https;branch=main"
# The revision built is pinned below (README.md, "The pinned revision", says how it is
# bumped); SRCREV:pn-pep-agent = "<commit>" in local.conf builds another.
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
# The agent's source at the layer's release: a build is the same whenever it runs.
SRCREV = "4e76cb2ab01d374e13e9a216a8145810643662df"
PV = "0.1.0+git${SRCPV}"
S = "${WORKDIR}/git"

# The project builds with flit_core, which every supported branch has a class for.
inherit python_flit_core systemd ptest

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
    # The benchmarks' smoke test imports bench/, which is not installed on the target.
    rm -f ${D}${PTEST_PATH}/tests/unit/test_bench_smoke.py
    # Helpers the unit tests import from tests/.
    for helper in ${S}/tests/*.py; do
        [ -e "$helper" ] && install -m 0644 "$helper" ${D}${PTEST_PATH}/tests/
    done
    if [ -d ${S}/tests/fixtures ]; then
        cp -R --no-preserve=ownership ${S}/tests/fixtures ${D}${PTEST_PATH}/tests/
    fi
    # Some unit tests check the unit files the package ships (lock directory, restart codes).
    install -d ${D}${PTEST_PATH}/systemd
    install -m 0644 ${S}/systemd/*.service ${D}${PTEST_PATH}/systemd/
    find ${D}${PTEST_PATH} -name __pycache__ -prune -exec rm -rf {} +
}

# The simulators (`pep-agent sim ...`, QA only) are packaged apart so that a production image
# carries only the agent.
PACKAGES =+ "${PN}-sim"
FILES:${PN}-sim = "${PYTHON_SITEPACKAGES_DIR}/pep_agent/sim"

# What the agent's own code imports, by oe-core's split of the standard library
# (python3-manifest.json) and by recipe; what its libraries import belongs in their recipes.
# check-closure.py (run by check-layer.sh) fails when a command imports a module these do not
# bring, directly or through the RDEPENDS of what they list.
#   core: os sys re pathlib enum typing signal stat struct errno subprocess threading
#         contextlib functools collections shutil ipaddress warnings types uuid
#   crypt (hashlib: the hashed names of FCC's storage), email
#   (email.utils), fcntl (the run lock), io (socket, tempfile), json, logging, math (random),
#   netclient (urllib, http.client), profile (dataclasses on kirkstone), shell (shlex).
#   difflib: click's parser imports it, and scarthgap's python3-click does not list it.
RDEPENDS:${PN} = " \
    python3-core \
    python3-crypt \
    python3-difflib \
    python3-email \
    python3-fcntl \
    python3-io \
    python3-json \
    python3-logging \
    python3-math \
    python3-netclient \
    python3-profile \
    python3-shell \
    python3-threading \
    python3-psutil \
    python3-requests \
    python3-systemd \
    python3-typer \
    python3-urllib3 \
    systemd \
"
# The pep server simulator's records (sqlite3), its HTTP server (netserver, html), the
# bundles it sends FCC (cbor2), the keys and certificates it makes (cryptography, datetime for
# their validity; crypt, for secrets, comes with the agent).
RDEPENDS:${PN}-sim = " \
    ${PN} \
    python3-cbor2 \
    python3-datetime \
    python3-cryptography \
    python3-html \
    python3-netserver \
    python3-sqlite3 \
"

RDEPENDS:${PN}-ptest += "${PN}-sim python3-hypothesis python3-pytest"
