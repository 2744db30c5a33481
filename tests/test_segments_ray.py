"""Segmented runs on Ray: a 2-node cluster on this machine (ray.cluster_utils.Cluster, one CPU
each), as a real cluster would run them: one actor per node, its model loaded once.

Each Ray start costs seconds and some 700 MB, so one cluster serves the module.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from rtsr.segments import RayExecutor, upscale_segmented
from tests.test_segments import POLICY, assert_same_as_single, make_media, pytestmark

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test]' installs it)")
pytestmark = [pytestmark, pytest.mark.slow]  # a Ray cluster starts in seconds and takes ~700 MB a node
ACTOR = b"ray::_SegmentActor"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_media(tmp_path_factory.mktemp("ray"), {"closed.mp4": False})


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 << 20})
    nodes.add_node(num_cpus=1, object_store_memory=80 << 20)
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, log_to_driver=False)
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def test_segments_spread_over_both_nodes(media: dict, cluster, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    clip, spec = media["clips"]["closed.mp4"], media["spec"]
    stats = upscale_segmented(clip, out, spec, RayExecutor(spec), policy=POLICY)
    assert sorted(stats.ran) == [0, 1, 2, 3] and stats.frames == 96
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(alive) == 2 and stats.nodes == alive  # one actor per node, and each took segments
    assert_same_as_single(out, media["single"]["closed.mp4"], media["lossless"]["closed.mp4"])


def _busy_actor_pids() -> list[int]:
    """Actors running a segment: Ray titles their process ray::_SegmentActor.run meanwhile."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(ACTOR + b".run"):
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the actors through Linux's /proc")
def test_sigkill_of_an_actor_still_finishes_the_same_output(media: dict, cluster, tmp_path: Path) -> None:
    clip, spec, out = media["clips"]["closed.mp4"], media["spec"], tmp_path / "out.mp4"
    result: dict = {}

    def run() -> None:
        try:
            result["stats"] = upscale_segmented(clip, out, spec, RayExecutor(spec), policy=POLICY)
        except BaseException as exc:  # handed to the test thread
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".rtsr-work/*/seg-*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)  # a segment is done: the actors are loaded
    while not (pids := _busy_actor_pids()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pids, "no actor was running a segment"
    os.kill(pids[0], signal.SIGKILL)  # its segment is lost in flight: Ray restarts the actor and retries it
    thread.join(120)
    assert "error" not in result, result.get("error")
    assert sorted(result["stats"].ran) == [0, 1, 2, 3]
    assert_same_as_single(out, media["single"]["closed.mp4"], media["lossless"]["closed.mp4"])
