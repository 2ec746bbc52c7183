SUMMARY = "Document parameters, class attributes and return types with Annotated[..., Doc()]"
DESCRIPTION = "Needed by typer >= 0.19. 0.0.6 is the newest release that supports Python 3.10 \
(kirkstone); 0.0.7 needs 3.11."
HOMEPAGE = "https://github.com/fastapi/annotated-doc"
SECTION = "devel/python"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://annotated_doc-${PV}.dist-info/licenses/LICENSE;md5=e36e91f278975b8bb76a769f32582892"

inherit pypi-wheel

SRC_URI[sha256sum] = "361ca0950cc7082f53fa69e9328409f40a62c61e57e0a47e1825a08078a58a53"

RDEPENDS:${PN} = "python3-core"
