SUMMARY = "Pygments, a syntax highlighting package written in Python"
DESCRIPTION = "rich 13.9.4 asks for pygments >= 2.13; kirkstone's oe-core has 2.11.2. \
Parsed on kirkstone only (branch-kirkstone/, see conf/layer.conf): scarthgap's 2.17.2 is recent enough."
HOMEPAGE = "https://pygments.org"
SECTION = "devel/python"
LICENSE = "BSD-2-Clause"
LIC_FILES_CHKSUM = "file://pygments-${PV}.dist-info/licenses/LICENSE;md5=36a13c90514e2899f1eba7f41c3ee592"

inherit pypi-wheel

PYPI_WHEEL_DIST = "pygments"
SRC_URI[sha256sum] = "b8e6aca0523f3ab76fee51799c488e38782ac06eafcf95e7ba832985c8e7b13a"

RDEPENDS:${PN} = "python3-core"
