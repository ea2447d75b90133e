#!/usr/bin/python3
"""PID 1 of a sandbox host: run sshd in the foreground, reap every child, exit on SIGTERM.

When PID 1 of a PID namespace exits the kernel kills everything else in it, so stopping is just exiting.
"""

import os
import signal
import subprocess
import sys
import time


def start_sshd():
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    return subprocess.Popen(["/usr/sbin/sshd", "-D", "-e"])


def main():
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    sshd = start_sshd()
    print("labctl-init: sshd started", flush=True)
    while True:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            pid = sshd.pid
        if pid == sshd.pid:
            print("labctl-init: sshd exited, restarting it", file=sys.stderr, flush=True)
            time.sleep(0.5)
            sshd = start_sshd()


if __name__ == "__main__":
    main()
