"""``comfyrig doctor``: one function per check, each returning a CheckResult."""

from .context import DoctorContext, gather
from .result import CheckResult, Status
from .runner import CHECKS, exit_code, run_checks

__all__ = ["CHECKS", "CheckResult", "DoctorContext", "Status", "exit_code", "gather", "run_checks"]
