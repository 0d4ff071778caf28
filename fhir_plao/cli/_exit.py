"""The exit-code table of every ``fhir-plao`` command, in one place.

======  =====================================================================================
code    meaning
======  =====================================================================================
0       done
1       the job ran and found a problem: invalid content, differences, refused or failed
        cases, unmapped content under ``--strict``
2       the job could not run: bad arguments, unreadable input, unreachable server, a missing
        optional part (Java for ``--engine hapi``, the ``plot`` extra)
130     interrupted (Ctrl-C)
======  =====================================================================================
"""

from __future__ import annotations

from enum import IntEnum

from fhir_plao.errors import (
    ExtraMissing,
    FhirError,
    InputError,
    ValidatorUnavailable,
)

__all__ = ["EXIT_CODES_HELP", "CannotRun", "ExitCode", "code_for"]


class ExitCode(IntEnum):
    OK = 0
    PROBLEM = 1
    CANNOT_RUN = 2
    INTERRUPTED = 130


#: the table as ``--help`` shows it
EXIT_CODES_HELP = """exit codes (every command):
  0    done
  1    the job ran and found a problem: invalid content, differences, refused or
       failed cases, unmapped content under --strict
  2    the job could not run: bad arguments, unreadable input, unreachable server,
       a missing optional part
  130  interrupted"""


class CannotRun(Exception):
    """An error that stopped the job before it began (the server could not be reached, or is
    not FHIR R4): exit 2 whatever its kind."""

    def __init__(self, error: FhirError) -> None:
        super().__init__(str(error))
        self.error = error


def code_for(exc: BaseException) -> ExitCode:
    """The exit code of an error that ended a command."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, CannotRun | InputError | ValidatorUnavailable | ExtraMissing):
        return ExitCode.CANNOT_RUN
    if isinstance(exc, FhirError):  # a refusal, an invalid Bundle, a failure while sending
        return ExitCode.PROBLEM
    return ExitCode.CANNOT_RUN  # an internal error: the job did not run to its end
