"""jobctl's exit codes, and the one table that turns server and connection errors into them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["TABLE", "CliError", "ExitCode", "from_exception"]


class ExitCode(enum.IntEnum):
    """Every exit status jobctl uses; documented in docs/cli.md and `jobctl --help`."""

    OK = 0
    NOT_RUNNING = 1  # the job is not running (stop), or still running (rm)
    USAGE = 2  # bad flags or configuration (click uses 2 for usage errors too)
    NOT_FOUND = 3  # no such job, or one the caller may not see
    PERMISSION_DENIED = 4  # the caller's role does not allow it, or the user is unknown
    CONNECTION = 5  # server down, TLS failure, certificate rejected, connection lost
    INVALID_ARGUMENT = 6  # the server refused the request (command or directory not found...)
    RESOURCE_EXHAUSTED = 7  # a server limit was reached
    INTERNAL = 70  # EX_SOFTWARE: the server (or jobctl) failed unexpectedly
    INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
    BROKEN_PIPE = 141  # stdout closed early (`| head`), as a shell reports SIGPIPE


class CliError(Exception):
    """An error to show a person: `message` goes to stderr, `code` becomes the exit status."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Row:
    """One answer: the exit code and the sentence, with {job}, {server}, {detail}, {paren}."""

    code: ExitCode
    template: str


_CHECK_CA = "Is --ca the CA that signed the server's certificate?"
_CHECK_CERT = "Is your certificate signed by the CA the server trusts, and still valid?"

# The one table. Keys: "grpc:STATUS" for a status the server answered with (by name, so this
# module never imports grpclib); "connect:REASON" for api.errors.ConnectFailure; "lost:CLASS"
# for a connection that broke after it was opened. {paren} is " (detail)" or nothing.
TABLE: dict[str, Row] = {
    "grpc:NOT_FOUND": Row(ExitCode.NOT_FOUND, "Job '{job}' not found."),
    "grpc:FAILED_PRECONDITION": Row(ExitCode.NOT_RUNNING, "Job '{job}' is not running."),
    # Start's only precondition: limits need a server that confines jobs.
    "grpc:FAILED_PRECONDITION:start": Row(ExitCode.NOT_RUNNING, "Cannot start: {detail}."),
    "grpc:PERMISSION_DENIED": Row(ExitCode.PERMISSION_DENIED, "Permission denied: {detail}."),
    "grpc:UNAUTHENTICATED": Row(
        ExitCode.PERMISSION_DENIED, "The server does not accept your certificate: {detail}."
    ),
    "grpc:INVALID_ARGUMENT": Row(ExitCode.INVALID_ARGUMENT, "Invalid request: {detail}."),
    "grpc:OUT_OF_RANGE": Row(ExitCode.INVALID_ARGUMENT, "Invalid request: {detail}."),
    "grpc:RESOURCE_EXHAUSTED": Row(ExitCode.RESOURCE_EXHAUSTED, "Server limit reached: {detail}."),
    "grpc:UNAVAILABLE": Row(ExitCode.CONNECTION, "Server {server} is unavailable: {detail}."),
    "grpc:DEADLINE_EXCEEDED": Row(ExitCode.CONNECTION, "Server {server} did not answer in time."),
    "grpc:CANCELLED": Row(ExitCode.CONNECTION, "The call to {server} was cancelled{paren}."),
    # INTERNAL, UNKNOWN, UNIMPLEMENTED, ...: a fault, not the user's doing.
    "grpc:*": Row(ExitCode.INTERNAL, "The server failed: {detail}."),
    "connect:INVALID_TARGET": Row(ExitCode.USAGE, "Invalid server address {server}: {detail}."),
    "connect:CREDENTIALS": Row(ExitCode.USAGE, "Cannot use your credentials: {detail}."),
    "connect:REFUSED": Row(
        ExitCode.CONNECTION, "Cannot connect to {server}: connection refused. Is jobd running?"
    ),
    "connect:UNREACHABLE": Row(ExitCode.CONNECTION, "Cannot reach {server}{paren}."),
    "connect:TLS_VERIFY": Row(
        ExitCode.CONNECTION,
        "Cannot connect to {server}: its certificate is not trusted{paren}. " + _CHECK_CA,
    ),
    "connect:NAME_MISMATCH": Row(
        ExitCode.CONNECTION,
        "Cannot connect to {server}: the server's certificate is not for that name{paren}. "
        "Dial a name it is for (-s NAME:PORT), or have one issued for this name "
        "(jobd pki add-server --name HOST).",
    ),
    "connect:TLS_HANDSHAKE": Row(
        ExitCode.CONNECTION, "Cannot connect to {server}: TLS handshake failed{paren}."
    ),
    "connect:REJECTED": Row(
        ExitCode.CONNECTION,
        "The server at {server} rejected the connection{paren}. " + _CHECK_CERT,
    ),
    "connect:POLICY": Row(
        ExitCode.CONNECTION, "Cannot connect to {server}: TLS policy check failed{paren}."
    ),
    "connect:TIMEOUT": Row(ExitCode.CONNECTION, "Cannot connect to {server}: timed out{paren}."),
    "connect:*": Row(ExitCode.CONNECTION, "Cannot connect to {server}{paren}."),
    "lost:TimeoutError": Row(ExitCode.CONNECTION, "Server {server} did not answer in time."),
    "lost:*": Row(ExitCode.CONNECTION, "Lost the connection to {server}{paren}."),
    "other:*": Row(ExitCode.INTERNAL, "jobctl failed{paren}."),
}

# Exceptions that mean the connection broke, by class name (so grpclib need not be imported).
_LOST = ("StreamTerminatedError", "ProtocolError", "SSLError", "TimeoutError", "OSError")


def _fill(row: Row, *, job: int | None, server: str, detail: str) -> CliError:
    # The detail is the server's (or the network's) text: never raw on the user's terminal.
    from jobservice.logsafe import escape_controls  # noqa: PLC0415 (errors only: "Cold start")

    detail = escape_controls(detail.strip().rstrip("."))
    message = row.template.format(
        job="?" if job is None else job,
        server=server,
        detail=detail or "no detail given",
        paren=f" ({detail})" if detail else "",
    )
    return CliError(message, row.code)


def _key(exc: BaseException) -> tuple[str, str]:
    """The table key for an exception, and the detail to show with it."""
    names = [klass.__name__ for klass in type(exc).__mro__]
    status = getattr(exc, "status", None)
    if "GRPCError" in names and isinstance(status, enum.Enum):
        return f"grpc:{status.name}", str(getattr(exc, "message", None) or "")
    reason = getattr(exc, "reason", None)
    if "ConnectError" in names and isinstance(reason, enum.Enum):
        return f"connect:{reason.name}", str(getattr(exc, "detail", "") or "")
    for name in _LOST:
        if name in names:
            return f"lost:{type(exc).__name__}", str(exc) or type(exc).__name__
    return "other:*", str(exc) or type(exc).__name__


def from_exception(exc: BaseException, *, server: str, job: int | None = None) -> CliError:
    """Translate a gRPC or connection error into the message and exit code a person sees."""
    if isinstance(exc, CliError):
        return exc
    key, detail = _key(exc)
    if key == "grpc:FAILED_PRECONDITION" and job is None:
        key = "grpc:FAILED_PRECONDITION:start"  # no job yet: the server says what is missing
    row = TABLE.get(key) or TABLE[key.split(":")[0] + ":*"]
    return _fill(row, job=job, server=server, detail=detail)
