SUMMARY = "Backported and experimental type hints for Python"
DESCRIPTION = "rich 13.9.4 asks for typing_extensions >= 4.0 on Python < 3.11; kirkstone's \
oe-core has 3.10.0.0. Parsed on kirkstone only (branch-kirkstone/, see conf/layer.conf): scarthgap's 4.10.0 is \
recent enough."
HOMEPAGE = "https://github.com/python/typing_extensions"
SECTION = "devel/python"
LICENSE = "PSF-2.0"
LIC_FILES_CHKSUM = "file://typing_extensions-${PV}.dist-info/LICENSE;md5=fcf6b249c2641540219a727f35d8d2c2"

inherit pypi-wheel

PYPI_WHEEL_PROJECT = "typing-extensions"
PYPI_WHEEL_DIST = "typing_extensions"
SRC_URI[sha256sum] = "04e5ca0351e0f3f85c6853954072df659d0d13fac324d0072316b67d7794700d"

RDEPENDS:${PN} = "python3-core"
