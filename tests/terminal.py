"""Start a child process as a terminal starts a program: in its own process group, SIGINT not ignored.

The Ctrl-C tests (tests/test_interrupt.py, tests/test_lanes.py) send SIGINT to a child's process
group. A suite started as a shell script's background job (`make test &`) inherits SIGINT ignored,
the child would inherit that too, and Python then installs no KeyboardInterrupt handler: the tests
are about Ctrl-C, not about how the suite was launched. An ignored signal stays ignored across
exec, a caught one reverts to its default, so the parent catches SIGINT while it starts the child.
This is done in the parent, not in a `preexec_fn`, which Python documents as unsafe in a process
with threads (a pytest-xdist worker has some): the child could deadlock before exec.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def start_as_from_a_terminal(args: list[str], **popen: Any) -> subprocess.Popen:
    """`subprocess.Popen(args, **popen)` in a new session, with SIGINT's default disposition."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(args, start_new_session=True, **popen)
    finally:
        signal.signal(signal.SIGINT, previous)
