SUMMARY = "Markdown parser, a port of markdown-it"
DESCRIPTION = "Needed by rich 13 (rich.markdown, which typer imports)."
HOMEPAGE = "https://github.com/executablebooks/markdown-it-py"
SECTION = "devel/python"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://markdown_it_py-${PV}.dist-info/LICENSE;md5=a38a1697260a7ad7bf29f44b362db1fc \
                    file://markdown_it_py-${PV}.dist-info/LICENSE.markdown-it;md5=4323c95e1014fb58368f2d4c2b78064b"

PYPI_WHEEL_DIST = "markdown_it_py"
inherit pypi-wheel

SRC_URI[sha256sum] = "355216845c60bd96232cd8d8c40e8f9765cc86f46880e43a8fd22dc1a1a8cab1"

RDEPENDS:${PN} = "python3-core python3-html python3-mdurl"
