"""`jobctl help [VERB]`: the same text as `jobctl --help` or `jobctl VERB --help`."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("help")
@click.argument("verb", required=False)
@click.pass_context
def command(ctx: click.Context, *, verb: str | None) -> int:
    """Show help for jobctl or one of its commands.

    \b
    Examples:
      jobctl help
      jobctl help run
    """
    group = ctx.parent
    assert group is not None
    assert isinstance(group.command, click.Group)
    if verb is None:
        click.echo(group.get_help())
        return 0
    found = group.command.get_command(group, verb)
    if found is None:
        raise click.BadParameter(
            f"no command {verb!r}; the commands: {', '.join(group.command.list_commands(group))}",
            param_hint="'VERB'",
        )
    with click.Context(found, info_name=verb, parent=group) as verb_ctx:
        click.echo(found.get_help(verb_ctx))
    return 0
