# Installs a pure-Python package from its universal wheel on PyPI.
#
# Why wheels: the current typer, rich and friends build with backends (pdm-backend, hatchling,
# uv_build, recent flit/poetry) that kirkstone has no class for, while installing a
# py3-none-any wheel needs nothing but python_pep517's installer step. The wheel is also
# unpacked into ${S} so that LIC_FILES_CHKSUM can point at the license file it carries.
#
# A recipe sets PYPI_WHEEL_PROJECT (the PyPI project name, default: BPN without "python3-"),
# optionally PYPI_WHEEL_DIST (the distribution name in the file name) and PYPI_WHEEL_TAG,
# plus SRC_URI[sha256sum] and LIC_FILES_CHKSUM relative to ${S}.

# python3native and python3-dir are what oe-core's python_flit_core & co. add to python_pep517:
# the native interpreter and installer, PYTHON_SITEPACKAGES_DIR, and the FILES entry that
# packages what the installer put there (else installed-vs-shipped QA fails).
inherit python_pep517 python3native python3-dir

FILES:${PN} += "${PYTHON_SITEPACKAGES_DIR}"

PYPI_WHEEL_PROJECT ?= "${@d.getVar('BPN').replace('python3-', '', 1)}"
PYPI_WHEEL_DIST ?= "${@d.getVar('PYPI_WHEEL_PROJECT').replace('-', '_')}"
PYPI_WHEEL_TAG ?= "py3-none-any"
PYPI_WHEEL_PYTAG ?= "${@d.getVar('PYPI_WHEEL_TAG').split('-')[0]}"
PYPI_WHEEL_FILE = "${PYPI_WHEEL_DIST}-${PV}-${PYPI_WHEEL_TAG}.whl"

SRC_URI = "https://files.pythonhosted.org/packages/${PYPI_WHEEL_PYTAG}/${@d.getVar('PYPI_WHEEL_PROJECT')[0]}/${PYPI_WHEEL_PROJECT}/${PYPI_WHEEL_FILE};unpack=0"

S = "${WORKDIR}/${BP}"

python pypi_wheel_extract () {
    import os
    import zipfile
    wheel = os.path.join(d.getVar('WORKDIR'), d.getVar('PYPI_WHEEL_FILE'))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(d.getVar('S'))
}
do_unpack[postfuncs] += "pypi_wheel_extract"
do_unpack[cleandirs] += "${S}"

do_configure[noexec] = "1"

do_compile () {
    rm -rf ${PEP517_WHEEL_PATH}
    install -d ${PEP517_WHEEL_PATH}
    install -m 0644 ${WORKDIR}/${PYPI_WHEEL_FILE} ${PEP517_WHEEL_PATH}/
}

BBCLASSEXTEND = "native nativesdk"
