SUMMARY = "URL utilities for markdown-it-py"
HOMEPAGE = "https://github.com/executablebooks/mdurl"
SECTION = "devel/python"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://mdurl-${PV}.dist-info/LICENSE;md5=aca1dc6b9088f1dda81c89cad2c77ad1"

inherit pypi-wheel

SRC_URI[sha256sum] = "84008a41e51615a49fc9966191ff91509e3c40b939176e643fd50a5c2196b8f8"

RDEPENDS:${PN} = "python3-core"
