SUMMARY = "Rich text and formatting in the terminal"
DESCRIPTION = "typer 0.28 requires rich >= 13.8, newer than any rich kirkstone's \
meta-python carries; this recipe's higher version is picked over one there. 13.9.4 is the \
last 13.x release and still supports Python 3.8+."
HOMEPAGE = "https://github.com/Textualize/rich"
SECTION = "devel/python"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://rich-${PV}.dist-info/LICENSE;md5=b5f0b94fbc94f5ad9ae4efcf8a778303"

inherit pypi-wheel

SRC_URI[sha256sum] = "6049d5e6ec054bf2779ab3358186963bac2ea89175919d699e378b99738c2a90"

RDEPENDS:${PN} = " \
    python3-core \
    python3-datetime \
    python3-io \
    python3-json \
    python3-markdown-it-py \
    python3-math \
    python3-pygments \
    python3-typing-extensions \
"
