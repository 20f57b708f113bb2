"""The one exception tree of comfyrig.

Library code raises these; only the CLI edge (``comfyrig.cli``) turns them
into a one-paragraph message and an exit code, so no user ever sees a traceback
for bad input::

    ComfyrigError                 exit 2 unless stated
    ├── ConfigError               a flag, variable or .env line that cannot be used
    │   ├── SelectionError        a GPU selection that does not fit this machine
    │   ├── ModelFileError        a model file or folder whose header cannot be read
    │   ├── StateDirError         comfyrig's state folder is missing, shared or not ours
    │   └── WorkflowError         a workflow that cannot be read, rewritten or varied (--set/--sweep)
    ├── GpuProbeError             NVML / nvidia-smi answered with an error
    ├── ComfyUINotFoundError      no ComfyUI directory or interpreter
    ├── LaunchError               ComfyUI could not be started or supervised (exit 1)
    │   └── PortInUseError        the port is taken (names the holder)
    ├── ComfyAPIError             ComfyUI's HTTP/websocket API failed (exit 1)
    │   ├── ComfyUnreachable      nothing answered: refused, timed out, DNS, socket closed
    │   └── ComfyHTTPError        it answered with an HTTP error (status, decoded body)
    ├── JournalError              a batch journal that is unreadable or breaks a state rule (exit 1)
    └── InstallError              ``comfyrig install`` could not finish (exit 1)
        ├── GitNotFoundError      no git on PATH
        ├── RemoteError           a git remote could not be reached (names the URL)
        ├── DriverTooOldError     no supported PyTorch CUDA build runs on this driver
        ├── NotComfyUIError       the target folder holds something else (exit 2)
        ├── StepFailedError       a command failed; carries its output and the retry
        └── InstallInterrupted    Ctrl-C during a step (exit 130)
"""

from __future__ import annotations

__all__ = [
    "ComfyAPIError",
    "ComfyHTTPError",
    "ComfyUINotFoundError",
    "ComfyUnreachable",
    "ComfyrigError",
    "ConfigError",
    "DriverTooOldError",
    "GitNotFoundError",
    "GpuProbeError",
    "InstallError",
    "InstallInterrupted",
    "JournalError",
    "LaunchError",
    "ModelFileError",
    "NotComfyUIError",
    "PortInUseError",
    "RemoteError",
    "SelectionError",
    "StateDirError",
    "StepFailedError",
    "WorkflowError",
]


class ComfyrigError(Exception):
    """Base of every error comfyrig reports to a person.

    ``hint`` is an optional second sentence saying what to do about it.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} {self.hint}"


class ConfigError(ComfyrigError):
    """A setting (flag, environment variable, .env line) is invalid."""


class SelectionError(ConfigError):
    """A GPU selection names GPUs this machine does not have, or repeats one."""


class ModelFileError(ConfigError):
    """Not a safetensors/GGUF file, a corrupt or truncated header, an empty folder."""


class WorkflowError(ConfigError):
    """A workflow that cannot be used: not API-format JSON, no loader to rewrite,
    or a --set/--sweep/--seed that does not fit it."""


class StateDirError(ConfigError):
    """The folder of instance records cannot be used safely: no home to put it in, or it
    (or a record in it) belongs to another user, is writable by others, or is a link."""


class GpuProbeError(ComfyrigError):
    """The GPU driver answered, but with an error."""


class ComfyUINotFoundError(ComfyrigError):
    """No usable ComfyUI directory or Python interpreter."""


class LaunchError(ComfyrigError):
    """ComfyUI could not be started, or stopped before it was ready."""

    exit_code = 1


class PortInUseError(LaunchError):
    """The requested port is already bound by another process."""


class ComfyAPIError(ComfyrigError):
    """ComfyUI's HTTP or websocket API answered with an error or not at all.

    ``status`` is the HTTP status when there was an answer (None: no answer at
    all, a system failure); ``body`` its decoded JSON, when it was JSON.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None, body: object = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.body = body


class ComfyUnreachable(ComfyAPIError):
    """Nothing answered at the URL (connection refused, timeout, no route, DNS, a closed
    socket): the server is down, starting or hung. Callers show it as "down", not "error";
    ``status`` is None."""


class ComfyHTTPError(ComfyAPIError):
    """ComfyUI answered, with an HTTP error status. ``status`` is that status; ``body`` its
    decoded JSON when it was JSON (for a rejected prompt, ``{error, node_errors}``)."""

    def __init__(self, message: str, *, status: int, hint: str | None = None, body: object = None) -> None:
        super().__init__(message, hint=hint, status=status, body=body)


class JournalError(ComfyrigError):
    """The batch journal cannot be used, or a job state change breaks its rules."""

    exit_code = 1


class InstallError(ComfyrigError):
    """``comfyrig install`` (or ``nodes add``) stopped before finishing.

    Every step checks what is already on disk, so running the same command
    again picks up where it stopped; the hints say so.
    """

    exit_code = 1


class GitNotFoundError(InstallError):
    """A step needs git and there is none on PATH."""


class RemoteError(InstallError):
    """A git remote (GitHub or the --repo URL) did not answer; the message names it."""


class DriverTooOldError(InstallError):
    """The NVIDIA driver is older than every PyTorch CUDA build comfyrig knows."""


class NotComfyUIError(InstallError):
    """The install folder exists and holds something other than ComfyUI."""

    exit_code = 2


class StepFailedError(InstallError):
    """A step's command exited non-zero, or ran but its check still fails."""


class InstallInterrupted(InstallError):
    """Ctrl-C arrived during a step."""

    exit_code = 130
