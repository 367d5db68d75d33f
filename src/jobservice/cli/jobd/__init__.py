"""`jobd`: the job service daemon (`jobd serve`) and its development PKI tool (`jobd pki`)."""

from __future__ import annotations

import click

from jobservice.cli.jobd.agent import agent
from jobservice.cli.jobd.natsconfig import nats_config
from jobservice.cli.jobd.pki import pki
from jobservice.cli.jobd.serve import serve

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jobservice", prog_name="jobd")
def cli() -> None:
    """Run commands on this host for authenticated users, over strict mutual TLS.

    \b
    Quick start (a development PKI, then the server on loopback):
      jobd pki init --out ./pki --user alice --user bob --user charlie
      jobd serve --listen 127.0.0.1:50051 \\
          --ca ./pki/ca.pem --cert ./pki/server.pem --key ./pki/server.key
    """


cli.add_command(serve)
cli.add_command(pki)
cli.add_command(agent)
cli.add_command(nats_config)


def main() -> None:
    """Console-script entry point."""
    cli()
