"""``RemoteConfig``: what it refuses before any ssh runs (no server needed)."""

from __future__ import annotations

import pytest

from deploytool.errors import ConfigError
from deploytool.remote import RemoteConfig


@pytest.mark.parametrize("option", ["StrictHostKeyChecking=no", "StrictHostKeyChecking=false", "stricthostkeychecking OFF",
                                    'StrictHostKeyChecking="no"', "StrictHostKeyChecking='accept-new'",
                                    "UserKnownHostsFile=/dev/null", 'UserKnownHostsFile="/dev/null"',
                                    'StrictHostKeyChecking="no'])
def test_every_spelling_that_turns_host_key_checking_off_is_refused(option):
    """ssh reads "false" as off, and strips quotes: StrictHostKeyChecking=false or "no" got through"""
    with pytest.raises(ConfigError, match="does not switch host-key checking off"):
        RemoteConfig(hosts=("pi@raspberrypi",), ssh_options=(option,))


@pytest.mark.parametrize("option", ["StrictHostKeyChecking=yes", "StrictHostKeyChecking ask", "Port=2222",
                                    "UserKnownHostsFile=/tmp/kh /tmp/kh2", 'UserKnownHostsFile="/tmp/a b"'])
def test_options_that_keep_host_key_checking_are_taken(option):
    assert RemoteConfig(hosts=("pi@raspberrypi",), ssh_options=(option,)).ssh_options == (option,)
