"""services.lifecycle.Children: what `phaser up` reports of its child processes."""

from __future__ import annotations

import sys

from services.lifecycle import Children


def test_peak_memory_is_read_per_child_before_they_stop():
    kids = Children()
    # a child that holds ~60 MB, then waits to be stopped
    code = "import sys, time; b = bytearray(60 * 2**20); sys.stdout.write('ok\\n'); sys.stdout.flush(); time.sleep(60)"
    import subprocess

    p = kids.spawn("big", [sys.executable, "-c", code], env={}, stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ok"
    kids.spawn("small", [sys.executable, "-c", "import time; time.sleep(60)"], env={})
    try:
        rss = kids.peak_rss_mb()
        assert set(rss) == {"big", "small"} or set(rss) == {"big"}  # "small" may not have started yet
        assert rss["big"] > 55 and rss["big"] > rss.get("small", 0) + 40
    finally:
        kids.stop_all(grace_s=2)
    assert kids.peak_rss_mb() == {}
