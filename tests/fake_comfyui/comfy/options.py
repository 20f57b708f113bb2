"""Whether importing comfy.cli_args parses sys.argv (main.py turns it on) or an empty list (tools that import it)."""

args_parsing = False


def enable_args_parsing(enable: bool = True) -> None:
    global args_parsing
    args_parsing = enable
