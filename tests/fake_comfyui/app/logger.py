"""Logging set-up with ComfyUI's streams (app/logger.py there).

Records are bare messages ("%(message)s"). By default every record goes to stderr; with
--log-stdout records below ERROR go to stdout and ERROR and above still go to stderr.
Both streams are line-buffered so a parent reading a pipe sees each line at once.
"""

import logging
import sys


def setup_logger(log_level: str = "INFO", use_stdout: bool = False) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)

    logger = logging.getLogger()
    logger.setLevel(log_level)
    formatter = logging.Formatter("%(message)s")

    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setFormatter(formatter)
    if use_stdout:
        to_stderr.addFilter(lambda record: record.levelno >= logging.ERROR)
        to_stdout = logging.StreamHandler(sys.stdout)
        to_stdout.setFormatter(formatter)
        to_stdout.addFilter(lambda record: record.levelno < logging.ERROR)
        logger.addHandler(to_stdout)
    logger.addHandler(to_stderr)
