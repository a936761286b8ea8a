"""The one user identity (issue 17): validated once, never root, never a second passwd line."""

from __future__ import annotations

import grp
import os
import pwd

import pytest

from jupyterhub_hpc.identity import (
    Group,
    IdentityError,
    UserIdentity,
    identity_from_auth_state,
    identity_from_nss,
)

ALICE = {
    "username": "alice",
    "uid": 2001,
    "group": {"name": "alice", "gid": 2001},
    "groups": [{"name": "proj-astro", "gid": 3001}, {"name": "hpc.users", "gid": 3002}],
    "home": "/home/alice",
    "shell": "/bin/bash",
    "gecos": "Alice Liddell",
}


def test_lines_and_description_of_an_identity() -> None:
    alice = UserIdentity.make(**ALICE)
    assert alice.passwd_line() == "alice:x:2001:2001:Alice Liddell:/home/alice:/bin/bash"
    assert alice.passwd_line(home="/home/jovyan") == "alice:x:2001:2001:Alice Liddell:/home/jovyan:/bin/bash"
    assert alice.group_lines() == ["alice:x:2001:", "proj-astro:x:3001:alice", "hpc.users:x:3002:alice"]
    assert alice.all_gids == (2001, 3001, 3002)
    assert alice.describe() == "alice (uid 2001, gid 2001 alice), groups proj-astro (3001), hpc.users (3002)"
    assert UserIdentity.from_env(alice.to_env()) == alice


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"uid": 0}, "uid"),
        ({"group": {"name": "root", "gid": 0}}, "group.gid"),
        ({"groups": [{"name": "wheel", "gid": 0}]}, "groups.0.gid"),
        ({"username": "alice:x:0:0::/:/bin/sh\nmallory"}, "username"),
        ({"username": "-rf"}, "username"),
        ({"home": "/home/alice\nroot:x:0:0::/root:/bin/sh"}, "home"),
        ({"home": "relative/home"}, "home"),
        ({"shell": "/bin/sh:extra"}, "shell"),
        ({"gecos": "Alice\nroot:x:0:0"}, "gecos"),
        ({"groups": [{"name": "a b", "gid": 3001}]}, "groups.0.name"),
        ({"groups": [{"name": "again", "gid": 2001}]}, "identity"),
        ({"uid": 2**32}, "uid"),
        ({"extra": "field"}, "extra"),
    ],
)
def test_an_identity_that_could_be_root_or_inject_a_line_is_refused(
    change: dict[str, object], field: str
) -> None:
    with pytest.raises(IdentityError) as caught:
        UserIdentity.make(**{**ALICE, **change})
    assert caught.value.field == field, caught.value
    if field in ("uid", "group.gid", "groups.0.gid") and change.get("uid") != 2**32:
        assert "uid and gid 0 are never used" in str(caught.value)


def test_a_tampered_environment_value_is_refused() -> None:
    text = UserIdentity.make(**ALICE).to_env().replace('"uid":2001', '"uid":0')
    with pytest.raises(IdentityError, match=r"^uid: "):
        UserIdentity.from_env(text)
    with pytest.raises(IdentityError):
        UserIdentity.from_env("not json")


def test_nss_gives_what_the_host_says() -> None:
    entry = pwd.getpwnam("hpcuser1")
    found = identity_from_nss("hpcuser1")
    assert (found.username, found.uid, found.gid, found.home) == (
        "hpcuser1",
        entry.pw_uid,
        entry.pw_gid,
        entry.pw_dir,
    )
    assert found.group.name == grp.getgrgid(entry.pw_gid).gr_name
    expected = [g for g in os.getgrouplist("hpcuser1", entry.pw_gid) if g != entry.pw_gid]
    assert [g.gid for g in found.groups] == expected
    assert all(g.name == grp.getgrgid(g.gid).gr_name for g in found.groups)


def test_nss_refuses_root_and_unknown_users() -> None:
    with pytest.raises(IdentityError, match=r"^uid: "):
        identity_from_nss("root")
    with pytest.raises(IdentityError, match="no such user"):
        identity_from_nss("no-such-user-here")


def test_auth_state_identity_with_the_hubs_name() -> None:
    state = {
        "identity": {
            "uid": 2001,
            "gid": 2001,
            "groups": [{"name": "proj-astro", "gid": 3001}],
            "home": "/u/a",
        }
    }
    found = identity_from_auth_state("alice", state)
    assert found is not None
    assert found.username == "alice" and found.group == Group(name="alice", gid=2001)
    assert found.groups == (Group(name="proj-astro", gid=3001),)
    assert identity_from_auth_state("alice", {"other": 1}) is None
    assert identity_from_auth_state("alice", None) is None
    with pytest.raises(IdentityError):
        identity_from_auth_state("alice", {"identity": {"uid": 0, "gid": 0, "home": "/root"}})
    with pytest.raises(IdentityError):
        identity_from_auth_state("alice", {"identity": ["uid", 2001]})
