"""`nabat run`'s process-wide settings: the malloc arena cap, seen in glibc's own report."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc arenas are glibc's",
)

THREADS = 6

# Apply the settings as `nabat run` does (or not), let THREADS threads allocate at the same
# time, and count the arenas in malloc_info()'s report (one <heap nr=…> per arena).
PROBE = textwrap.dedent(
    """
    import ctypes, subprocess, sys, tempfile, threading
    from nabat.config import HubSettings
    from nabat.runtime import apply_runtime_settings, limit_malloc_arenas

    mode = sys.argv[1]
    if mode == "run":
        apply_runtime_settings(HubSettings())
        # A process the hub starts (a camera or video worker) with the environment it inherits.
        child = subprocess.run(
            [sys.executable, __file__, "bare"], capture_output=True, text=True, check=True
        )
        print("child", child.stdout.split()[-1])
    elif mode == "env":
        print("set", limit_malloc_arenas(2))
    barrier = threading.Barrier({threads} + 1)
    kept = []

    def work():
        kept.append([bytearray(4096) for _ in range(64)])
        barrier.wait()
        barrier.wait()

    threads = [threading.Thread(target=work) for _ in range({threads})]
    for thread in threads:
        thread.start()
    barrier.wait()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    with tempfile.NamedTemporaryFile(suffix=".xml") as report:
        fp = libc.fopen(report.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        print("arenas", open(report.name).read().count("<heap nr="))
    barrier.wait()
    for thread in threads:
        thread.join()
    """
).format(threads=THREADS)


@pytest.fixture(scope="module")
def probe_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("runtime") / "arenas.py"
    path.write_text(PROBE)
    return path


def run_probe(*args: str, **env: str) -> dict[str, str]:
    """A probe's ``name value`` lines, run without the operator's own arena limit unless given."""
    ours = ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")
    environ = {k: v for k, v in os.environ.items() if k not in ours} | env
    done = subprocess.run(
        [sys.executable, *args], env=environ, capture_output=True, text=True, timeout=60, check=True
    )
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def probe(path, mode: str, **env: str) -> dict[str, str]:
    return run_probe(str(path), mode, **env)


def test_without_the_cap_each_thread_that_allocates_gets_an_arena_of_its_own(probe_file):
    # The baseline the cap is measured against: glibc's default (8 per core) is not reached.
    assert int(probe(probe_file, "bare")["arenas"]) >= THREADS


def test_nabat_run_caps_the_arenas_at_the_configured_two_and_its_workers_inherit_it(
    probe_file,
):
    out = probe(probe_file, "run")
    assert int(out["arenas"]) == 2
    assert int(out["child"]) == 2


@pytest.mark.parametrize(
    "operator", [{"MALLOC_ARENA_MAX": "3"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=3"}]
)
def test_an_operators_own_arena_limit_wins_over_the_setting(probe_file, operator):
    out = probe(probe_file, "env", **operator)
    assert out["set"] == "False"
    assert int(out["arenas"]) == 3


def test_the_heap_report_tells_memory_in_use_from_memory_freed_but_kept():
    from nabat.runtime import malloc_usage

    before = malloc_usage()
    if before is None:
        pytest.skip("glibc before 2.33: no mallinfo2")
    held = [bytearray(1000) for _ in range(50_000)]  # ~50 MB from malloc (not Python's arenas)
    grown = malloc_usage()
    del held[::2]  # every other block freed: holes the allocator keeps, RSS stays
    holed = malloc_usage()
    assert grown[0] - before[0] > 45_000_000
    assert grown[0] - holed[0] > 22_000_000
    assert holed[1] - grown[1] > 22_000_000


# 80 MB freed below blocks still in use: glibc keeps those pages resident (it gives back only
# the top of its heap) until malloc_trim returns them.
TRIM_PROBE = textwrap.dedent(
    """
    import sys, time
    from nabat.runtime import start_heap_trimmer

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024

    blocks = [bytearray(1000) for _ in range(100_000)]
    above = [bytearray(1000) for _ in range(1_000)]  # keeps the freed part off the heap's top
    full = rss_mb()
    del blocks[:80_000]
    print("freed", rss_mb() - full)
    if sys.argv[1] == "trim":
        stop = start_heap_trimmer(0.05)
        deadline = time.monotonic() + 20
        while rss_mb() > full - 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        print("trimmed", rss_mb() - full)
        stop.set()
    """
)


def trim_probe(mode: str) -> dict[str, int]:
    return {k: int(v) for k, v in run_probe("-c", TRIM_PROBE, mode).items()}


def test_freed_heap_memory_stays_resident_until_the_trimmer_gives_it_back():
    assert trim_probe("bare")["freed"] > -10  # freeing alone returns (nearly) nothing
    out = trim_probe("trim")
    assert out["trimmed"] <= -40  # of the ~80 MB freed
