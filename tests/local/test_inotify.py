"""`fenlei up` counts the inotify instances its Envoys will need against what the user has
left, and refuses with what to do rather than let an Envoy abort at start."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from fenlei.local.mesh import INOTIFY_LIMIT, MeshError, check_inotify_room, inotify_in_use, inotify_instances


def test_an_inotify_instance_is_counted_while_it_is_open() -> None:
    own = Path(f"/proc/{os.getpid()}")
    before = inotify_instances(own)
    fd = ctypes.CDLL(None, use_errno=True).inotify_init()
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        assert inotify_instances(own) == before + 1
        assert inotify_in_use() >= before + 1
    finally:
        os.close(fd)
    assert inotify_instances(own) == before


def test_a_mesh_that_would_run_out_is_refused_with_what_to_do() -> None:
    limit = int(INOTIFY_LIMIT.read_text())
    with pytest.raises(MeshError, match=r"need about \d+ inotify instances .* of \d+ left .*fenlei down.*max_user_instances"):
        check_inotify_room(limit)
    check_inotify_room(0)
