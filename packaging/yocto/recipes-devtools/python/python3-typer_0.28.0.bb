SUMMARY = "Typer: command line applications from Python type hints"
DESCRIPTION = "typer 0.28 vendors its own copy of click, so python3-click is not needed. \
0.29 and later pull in pydantic (with a compiled core), which a gateway image does not want: \
pep-agent pins typer below 0.29."
HOMEPAGE = "https://typer.tiangolo.com/"
SECTION = "devel/python"
LICENSE = "MIT & BSD-3-Clause"
LIC_FILES_CHKSUM = "file://typer-${PV}.dist-info/licenses/LICENSE;md5=173d405eb704b1499218013178722617 \
                    file://typer/_click/LICENSE.txt;md5=1fa98232fd645608937a0fdc82e999b8"

inherit pypi-wheel

SRC_URI[sha256sum] = "afd18929180b706c5e9a239f53c3c8136903553c0c2d460598bbaa924191d4ab"

RDEPENDS:${PN} = " \
    python3-annotated-doc \
    python3-core \
    python3-datetime \
    python3-io \
    python3-json \
    python3-rich \
    python3-shell \
    python3-shellingham \
    python3-typing-extensions \
"
