SUMMARY = "Typer: command line applications from Python type hints"
DESCRIPTION = "typer 0.9.4 needs only click and typing-extensions, which kirkstone and \
scarthgap both carry; rich and shellingham are optional (help is plain text without rich, \
shell detection for --install-completion needs shellingham)."
HOMEPAGE = "https://typer.tiangolo.com/"
SECTION = "devel/python"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=173d405eb704b1499218013178722617"

# The sdist builds with flit_core; oe-core's class runs it without build isolation, so the
# project's "flit_core >=2,<3" bound does not apply: flit_core 3 still reads the
# [tool.flit.metadata] table.
inherit pypi python_flit_core

SRC_URI[sha256sum] = "f714c2d90afae3a7929fcd72a3abb08df305e1ff61719381384211c4070af57f"

# What typer itself imports, as check-closure.py records it under pep-agent's commands.
RDEPENDS:${PN} = " \
    python3-click \
    python3-core \
    python3-typing-extensions \
"
