"""A1111 reads this before parsing the command line: the extension's flags (--controlnet-dir, ...)."""

from lib_controlnet.settings import add_flags


def preload(parser):
    add_flags(parser)
