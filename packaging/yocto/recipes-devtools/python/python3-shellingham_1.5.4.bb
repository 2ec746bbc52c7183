SUMMARY = "Detect what shell the current Python executable runs in"
DESCRIPTION = "A typer dependency (shell completion). Not in kirkstone's meta-python."
HOMEPAGE = "https://github.com/sarugaku/shellingham"
SECTION = "devel/python"
LICENSE = "ISC"
LIC_FILES_CHKSUM = "file://shellingham-${PV}.dist-info/LICENSE;md5=78e1c0248051c32a38a7f820c30bd7a5"

PYPI_WHEEL_TAG = "py2.py3-none-any"
inherit pypi-wheel

SRC_URI[sha256sum] = "7ecfff8f2fd72616f7481040475a65b2bf8af90a56c89140852d1120324e8686"

RDEPENDS:${PN} = "python3-core python3-io"
