"""The exec trampoline: the job's first process enters its cgroups and drops privileges, then execs.

It runs in the child between fork and the job's own code, so no process of the job is ever
outside its cgroups (no race with a fork during start) and nothing of jobd's runs as the job.
Python cannot do this in the child (`preexec_fn` turns vfork off and is unsafe with threads),
and /bin/sh mangles the environment (drops names it cannot parse, adds PWD), so it is a few
lines of Perl, which every Debian-family system has (perl-base is essential). Measured here:
~1.2 ms more per start than a plain exec, in the child, not in jobd (docs/confinement.md).

The child starts with an empty environment (no PERL5OPT or PERL5LIB can run code as root); the
job's environment comes through a memfd, so its values never appear in a command line.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from jobservice.core.confine.account import Account

__all__ = ["SCRIPT", "Trampoline", "env_memfd", "find_perl"]

# argv: ENV_FD UID GID DIR EXECUTABLE CGROUP.PROCS... -- ARGV0 ARGS...   (UID "-": keep ours)
# Exit status on failure: 127 (like a shell's "not found") or 126 (found, not usable).
SCRIPT = r"""
sub fail { syswrite(STDERR, "jobd: $_[1]\n"); exit $_[0] }
my ($fd, $uid, $gid, $dir, $exe) = splice(@ARGV, 0, 5);
while (@ARGV) {
    my $f = shift @ARGV;
    last if $f eq "--";
    my $h;
    open($h, ">", $f) && syswrite($h, "$$\n") && close($h)
        or fail(127, "cannot enter cgroup $f: $!");
}
open(my $e, "<&=", $fd) or fail(127, "cannot read the job's environment: $!");
{
    local $/ = "\0";
    %ENV = ();
    while (defined(my $kv = <$e>)) {
        chop $kv;
        my $i = index($kv, "=");
        $ENV{substr($kv, 0, $i)} = substr($kv, $i + 1);
    }
}
close($e);
if ($uid ne "-") {
    ($(, $)) = ($gid, "$gid $gid");
    ($<, $>) = ($uid, $uid);
    fail(127, "cannot switch to uid $uid gid $gid: $!")
        if $< != $uid || $> != $uid || $( != $gid || $) != $gid;
}
chdir($dir) or fail(126, "cannot enter directory $dir: $!");
exec {$exe} @ARGV;
my ($why, $missing) = ("$!", $!{ENOENT});
# ENOENT for a file that exists: its #! line names a program that does not (as bash says).
if ($missing && -e $exe && open(my $s, "<", $exe)) {
    my $line = <$s> // "";
    $why = "bad interpreter $1: $why" if $line =~ /^#!\s*(\S+)/;
}
fail($missing ? 127 : 126, "cannot execute $exe: $why");
"""


def find_perl() -> str | None:
    """The Perl the trampoline needs, from a fixed safe PATH (not jobd's environment)."""
    return shutil.which("perl", path="/usr/bin:/bin:/usr/local/bin")


class Trampoline:
    """Builds the trampoline's command line for one job."""

    def __init__(self, perl: str) -> None:
        self.perl = perl

    def argv(
        self,
        *,
        env_fd: int,
        account: Account | None,
        directory: str,
        executable: str,
        procs_files: Sequence[Path],
        argv: Sequence[str],
    ) -> list[str]:
        uid, gid = ("-", "-") if account is None else (str(account.uid), str(account.gid))
        head = [self.perl, "-e", SCRIPT, "--", str(env_fd), uid, gid, directory, executable]
        return [*head, *map(str, procs_files), "--", *argv]


def env_memfd(env: dict[str, str]) -> int:
    """A memfd holding `env` as NAME=VALUE\\0 records, at offset 0, for the trampoline to read."""
    fd = os.memfd_create("jobd-env", os.MFD_CLOEXEC)
    try:
        os.write(fd, b"".join(f"{k}={v}\0".encode() for k, v in env.items()))
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
