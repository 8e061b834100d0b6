"""SQLite's writer queue: one writer at a time across the threads and processes of a deployment."""

from __future__ import annotations

import fcntl
import os

from crm import database


def test_a_forked_worker_queues_behind_the_parent_not_beside_it(tmp_path):
    """After a fork (gunicorn --preload), the child's queue must wait while the parent holds the write turn."""
    path = str(tmp_path / "crm.sqlite3")
    with database._queues_lock:
        parent = database._queues.setdefault(path, database.WriterQueue(path))
    assert parent.acquire()
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child process
            queue = database._queues.get(path) or database.WriterQueue(path)
            try:
                fcntl.flock(queue._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os._exit(0 if not database._queues else 2)  # blocked, as it must be
            os._exit(1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        parent.release()
        database._queues.pop(path, None)
