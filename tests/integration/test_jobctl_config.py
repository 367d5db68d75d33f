"""Where jobctl's settings come from, end to end: flags > JOBCTL_* > config profile."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from jobctl_support import Jobctl, Server, finish


@pytest.fixture(scope="module")
def ctl(shared_jobd: Server, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Jobctl:
    return Jobctl(shared_jobd.target, pki, tmp_path_factory.mktemp("home"))


def _dead() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _write_config(root: Path, text: str) -> Path:
    path = root / "jobctl" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return root


def test_precedence(ctl: Jobctl, pki: Path, tmp_path: Path) -> None:
    live, dead = ctl.target, _dead()
    # The profile names files relative to the config file, and bob as the user.
    (tmp_path / "xdg/jobctl").mkdir(parents=True)
    (tmp_path / "xdg/jobctl/pki").symlink_to(pki)
    xdg = _write_config(
        tmp_path / "xdg",
        f'[profiles.default]\nserver = "{dead}"\ncert = "pki/bob.pem"\nkey = "pki/bob.key"\n'
        f'ca = "pki/ca.pem"\n\n[profiles.live]\nserver = "{live}"\ncert = "pki/charlie.pem"\n',
    )
    home = tmp_path / "home"
    _write_config(
        home / ".config", f'[profiles.default]\nserver = "{live}"\ncert = "{pki}/alice.pem"\n'
    )
    base = {"XDG_CONFIG_HOME": str(xdg)}
    no_server = {"JOBCTL_SERVER": ""}
    cases = {
        # the default profile alone: its dead server
        "profile": ctl.popen("list", user=None, env={**base, **no_server}),
        # JOBCTL_SERVER beats the profile; the profile's cert (bob) still applies
        "env": ctl.popen("-u", "bob", "list", user=None, env=base),
        # a flag beats JOBCTL_SERVER
        "flag": ctl.popen(
            "-s", live, "-u", "bob", "list", user=None, env={**base, "JOBCTL_SERVER": dead}
        ),
        "--profile": ctl.popen(
            "--profile", "live", "-u", "charlie", "list", user=None, env={**base, **no_server}
        ),
        "JOBCTL_PROFILE": ctl.popen(
            "-u", "charlie", "list", user=None, env={**base, **no_server, "JOBCTL_PROFILE": "live"}
        ),
        # --profile on the command line beats JOBCTL_CERT (alice): charlie's certificate
        "--profile_over_env": ctl.popen(
            "--profile", "live", "-u", "charlie", "list", user="alice", env=base
        ),
        # JOBCTL_CERT beats the profile's cert: alice, not bob
        "cert_env": ctl.popen("-u", "alice", "list", user="alice", env=base),
        # no XDG_CONFIG_HOME: ~/.config/jobctl/config.toml
        "home": ctl.popen("-u", "alice", "list", user=None, env={**no_server, "HOME": str(home)}),
        "JOBCTL_USER": ctl.popen("list", user=None, env={**base, "JOBCTL_USER": "alice"}),
        "unknown_profile": ctl.popen("--profile", "nope", "list", env=base),
    }
    results = {name: finish(proc, (name,)) for name, proc in cases.items()}
    codes = {name: r.code for name, r in results.items()}
    assert codes == {
        "profile": 5,
        "env": 0,
        "flag": 0,
        "--profile": 0,
        "JOBCTL_PROFILE": 0,
        "--profile_over_env": 0,
        "cert_env": 0,
        "home": 0,
        "JOBCTL_USER": 2,  # the profile's certificate is bob's
        "unknown_profile": 2,
    }, results
    assert dead in results["profile"].stderr
    assert "is for 'bob'" in results["JOBCTL_USER"].stderr
    assert "No profile 'nope'" in results["unknown_profile"].stderr
