"""python -m pyvs.timing: the same as `pyvs timing`."""
import sys

from ..cli import main

sys.exit(main(["timing", *sys.argv[1:]]))
