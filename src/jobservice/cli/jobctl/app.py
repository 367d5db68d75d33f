"""The click application of jobctl: global options, lazily loaded verbs, and error handling."""

from __future__ import annotations

import importlib

import click

from jobservice import __version__
from jobservice.cli.jobctl.complete import complete_profiles
from jobservice.cli.jobctl.config import DEFAULT_SERVER, Globals
from jobservice.cli.jobctl.exitcodes import ExitCode
from jobservice.cli.jobctl.globalopts import after_verb_options
from jobservice.cli.jobctl.outcome import conclude

__all__ = ["VERBS", "LazyGroup", "cli", "run"]

_EPILOG = f"""
\b
Examples (a server on {DEFAULT_SERVER}, certificates from `jobd pki init --out pki`):
  export JOBCTL_CERT=pki/alice.pem     # key and CA are found beside it
  jobctl start --cmd echo --args "hello world"      # prints the job id: 0
  jobctl start -- sleep 10000                       # short form: 1
  jobctl status 0                                   # Job '0': Exited: 0
  jobctl output 0                                   # hello world
  jobctl stop 1                                     # Stopped Job '1'
  jobctl rm 0 1                                     # Removed Job '0' ...
  jobctl list
  jobctl run -- sh -c 'echo hi; exit 3'             # exits 3, like the job

\b
Settings, first found wins: flags, and the profile --profile names; JOBCTL_SERVER,
JOBCTL_CERT, JOBCTL_KEY, JOBCTL_CA, JOBCTL_USER; the profile JOBCTL_PROFILE names, else
"default". Profiles are in $XDG_CONFIG_HOME/jobctl/config.toml (~/.config/jobctl/config.toml):
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


# Each verb, a module of this package imported only when the verb is used, and the summary
# `--help` lists: the first sentence of the verb's docstring (a unit test keeps them in step).
VERBS = {
    "help": "Show help for jobctl or one of its commands.",
    "list": "List the jobs you may see: id, owner, state, exit, started, command.",
    "nodes": "List a cluster's nodes: name, liveness, running jobs, last heartbeat.",
    "output": "Print a job's output; follow it live until the job ends.",
    "rm": "Remove finished jobs: their record and their output, now.",
    "run": "Start a job, stream its output, and exit with the job's exit status.",
    "start": "Start a job and print its id.",
    "status": "Show a job's status.",
    "stop": "Stop a running job and wait until it has exited.",
}


class LazyGroup(click.Group):
    """A group that imports a verb's module only when that verb is looked up.

    Click's documented pattern for a fast start: `jobctl status` imports status.py and what it
    needs, not the other verbs. `jobctl --help` lists the verbs from `VERBS`, importing none.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *VERBS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in VERBS and cmd_name not in self.commands:
            module = importlib.import_module(f"{__package__}.{cmd_name}")
            module.command.params.extend(after_verb_options())  # `jobctl list --profile ops`
            self.add_command(module.command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.NoSuchCommand as exc:
            # Click suggests close names from the verbs loaded so far; offer every verb.
            raise click.NoSuchCommand(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Click's own layout, applied to stand-ins that carry only the summaries.
        summaries = click.Group(
            commands=[click.Command(name, help=summary) for name, summary in VERBS.items()]
        )
        click.Group.format_commands(summaries, ctx, formatter)


_PATH = click.Path(dir_okay=False)


@click.group(
    cls=LazyGroup,
    epilog=_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("-s", "--server", metavar="HOST:PORT", help=f"jobd address [{DEFAULT_SERVER}].")
@click.option("-u", "--user", metavar="NAME", help="Expected user; must be the cert's CN.")
@click.option("-c", "--cert", type=_PATH, help="Client certificate (PEM).")
@click.option("-k", "--key", type=_PATH, help="Client key [the cert's path with .key].")
@click.option("--ca", type=_PATH, help="CA that signed the server [ca.pem beside the cert].")
@click.option(
    "--profile",
    metavar="NAME",
    help="Profile in the config file [default].",
    shell_complete=complete_profiles,
)
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


def run(argv: list[str] | None) -> int:
    """Run jobctl on `argv` (None: `sys.argv`) and return its exit status; no tracebacks."""
    return conclude(lambda: _run_click(argv))


def _run_click(argv: list[str] | None) -> int:
    try:
        code = cli.main(args=argv, prog_name="jobctl", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        return int(ExitCode.INTERRUPTED)
    return code if isinstance(code, int) else 0
