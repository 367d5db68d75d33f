"""jobctl: the command-line client of jobd; `main` is the console script, `cli` the click group."""

from __future__ import annotations

import os
import sys

import click

from jobservice import __version__
from jobservice.cli.jobctl import list as list_cmd
from jobservice.cli.jobctl import output, run, start, status, stop
from jobservice.cli.jobctl.config import DEFAULT_SERVER, Globals
from jobservice.cli.jobctl.exitcodes import CliError, ExitCode

__all__ = ["cli", "main"]

_EPILOG = f"""
\b
Examples (a server on {DEFAULT_SERVER}, certificates from `jobd pki init --out pki`):
  export JOBCTL_CERT=pki/alice.pem     # key and CA are found beside it
  jobctl start --cmd echo --args "hello world"      # prints the job id: 0
  jobctl start -- sleep 10000                       # short form: 1
  jobctl status 0                                   # Job '0': Exited: 0
  jobctl output 0                                   # hello world
  jobctl stop 1                                     # Stopped Job '1'
  jobctl list
  jobctl run -- sh -c 'echo hi; exit 3'             # exits 3, like the job

\b
Settings, first found wins: flags; JOBCTL_SERVER, JOBCTL_CERT, JOBCTL_KEY, JOBCTL_CA,
JOBCTL_USER; the profile (--profile, JOBCTL_PROFILE, else "default") in
$XDG_CONFIG_HOME/jobctl/config.toml (~/.config/jobctl/config.toml):
  [profiles.default]
  server = "{DEFAULT_SERVER}"
  cert = "~/pki/alice.pem"
  key = "~/pki/alice.key"
  ca = "~/pki/ca.pem"

\b
Exit status: 0 ok; 1 job not running; 2 usage or configuration error; 3 job not found;
4 permission denied; 5 cannot connect (server down, TLS or certificate failure);
6 invalid request; 7 server limit reached; 70 internal error; 130 interrupted.
`jobctl run` exits with the job's own status (128+N when signal N ended it).

\b
Shell completion (bash; zsh and fish likewise):
  eval "$(_JOBCTL_COMPLETE=bash_source jobctl)"
"""


_PATH = click.Path(dir_okay=False)


@click.group(epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-s", "--server", metavar="HOST:PORT", help=f"jobd address [{DEFAULT_SERVER}].")
@click.option("-u", "--user", metavar="NAME", help="Expected user; must be the cert's CN.")
@click.option("-c", "--cert", type=_PATH, help="Client certificate (PEM).")
@click.option("-k", "--key", type=_PATH, help="Client key [the cert's path with .key].")
@click.option("--ca", type=_PATH, help="CA that signed the server [ca.pem beside the cert].")
@click.option("--profile", metavar="NAME", help="Profile in the config file [default].")
@click.version_option(__version__, "-V", "--version", prog_name="jobctl")
@click.pass_context
def cli(
    ctx: click.Context,
    *,
    server: str | None,
    user: str | None,
    cert: str | None,
    key: str | None,
    ca: str | None,
    profile: str | None,
) -> None:
    """Start, stop and follow jobs on a jobd server, over mutual TLS."""
    ctx.obj = Globals(server, user, cert, key, ca, profile)


for _verb in (start, stop, status, output, list_cmd, run):
    cli.add_command(_verb.command)


def _quiet_stdout() -> None:
    """stdout's reader has gone (`| head`): point stdout at /dev/null so the exit flush is quiet.

    This is the recipe from the Python docs' "Note on SIGPIPE".
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """Run jobctl and return its exit status; never lets a traceback reach the user."""
    try:
        code = cli.main(args=argv, prog_name="jobctl", standalone_mode=False)
        sys.stdout.flush()
    except CliError as exc:
        if exc.code is ExitCode.BROKEN_PIPE:
            _quiet_stdout()
        elif exc.message:
            click.echo(exc.message, err=True)
        return int(exc.code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        _quiet_stdout()
        return int(ExitCode.BROKEN_PIPE)
    except Exception as exc:  # a bug in jobctl: still one readable line, unless debugging
        if os.environ.get("JOBCTL_DEBUG"):
            raise
        click.echo(f"jobctl: internal error: {exc!r} (JOBCTL_DEBUG=1 shows details)", err=True)
        return int(ExitCode.INTERNAL)
    return code if isinstance(code, int) else 0
