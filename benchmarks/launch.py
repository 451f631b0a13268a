"""Runs one command as its own child and writes that child's wall time, peak RSS and exit code to a file.

    python -S -I benchmarks/launch.py RESULT_FILE TIMEOUT_S COMMAND [ARG...]

Why a launcher: on Linux a child's `ru_maxrss` starts at the peak RSS of the process it was forked or
vforked from (exec records the old image's high-water mark), so children spawned straight from the
benchmark driver would report the driver's memory, not their own. This launcher is tiny (started with
-S -I, it imports nothing but os, signal, sys and time: about 8 MiB), so the floor it puts under the
measured child is below what any Python program uses. It also times the child from spawn to reap
without its own start-up, kills it after TIMEOUT_S, and passes SIGTERM and SIGINT on to it.

RESULT_FILE gets one line: ``<wall seconds> <ru_maxrss> <exit code>`` (ru_maxrss in KiB on Linux).
"""

import os
import signal
import sys
import time


def main() -> int:
    result_path, timeout, *argv = sys.argv[1:]
    start = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)

    def forward(signum: int, _frame: object) -> None:
        os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
    signal.alarm(max(1, int(float(timeout))))
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    signal.alarm(0)
    code = os.waitstatus_to_exitcode(status)
    with open(result_path, "w", encoding="ascii") as f:
        f.write(f"{wall!r} {usage.ru_maxrss} {code}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
