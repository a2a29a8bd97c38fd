"""``python -m autolrs.service``: the same server as ``autolrs serve``."""

import argparse
import logging
import sys

from autolrs.service.cli import configure_parser, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m autolrs.service")
    configure_parser(parser)
    # A command line program may configure logging; the library itself never does.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("autolrs").setLevel(logging.INFO)
    sys.exit(main(parser.parse_args()))
