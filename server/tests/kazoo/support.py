"""Helpers for the kazoo suite: bounded threads and event-driven waiting."""

import os
import socket
import sys
import threading
import time
import traceback

from kazoo.exceptions import KazooException, NoNodeError

# Upper bound for anything a test waits on; generous for a loaded 2-core box.
WAIT = 30.0
# KAZOO_SUITE_SCALE=N multiplies the work of the concurrent tests (a soak).
SCALE = max(1, int(os.environ.get("KAZOO_SUITE_SCALE", "1")))


def run_concurrently(fns, timeout=60.0):
    """Runs each callable in its own daemon thread, all started together.

    Returns their results in order. Fails if any raised (with its traceback)
    or if any is still running after ``timeout`` (times SCALE) seconds."""
    timeout *= SCALE
    results = [None] * len(fns)
    errors = []
    start = threading.Barrier(len(fns))

    def body(i, fn):
        try:
            start.wait(timeout)
            results[i] = fn()
        except BaseException:
            errors.append((i, traceback.format_exc()))

    threads = [threading.Thread(target=body, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [i for i, t in enumerate(threads) if t.is_alive()]
    if errors:
        i, tb = errors[0]
        raise AssertionError(f"thread {i} failed ({len(errors)} failed in all):\n{tb}")
    if hung:
        _dump_threads()
        raise AssertionError(f"threads {hung} still running after {timeout} s")
    return results


def _dump_threads():
    frames = sys._current_frames()
    for t in threading.enumerate():
        frame = frames.get(t.ident)
        if frame is not None:
            print(f"--- thread {t.name}", file=sys.stderr)
            traceback.print_stack(frame, file=sys.stderr)


class Recorder:
    """A list appended to from watch callbacks, with waiting on a condition."""

    def __init__(self):
        self._items = []
        self._cond = threading.Condition()

    def append(self, item):
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def items(self):
        with self._cond:
            return list(self._items)

    def wait_for(self, predicate, timeout=WAIT, what="condition"):
        """Waits until predicate(items) is true; returns the items."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self._items), timeout):
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; saw {self._items!r}")
            return list(self._items)


class Gate:
    """Waits (event-driven) until a znode's children satisfy a predicate.

    Uses a one-shot child watch re-armed after every event, so nothing is
    polled."""

    def __init__(self, client, path):
        self.client = client
        self.path = path
        self._cond = threading.Condition()
        self._children = None
        self._stopped = False
        self._fetch()

    def _fetch(self, event=None):
        if self._stopped:
            return
        try:
            children = self.client.retry(self.client.get_children, self.path, watch=self._fetch)
        except NoNodeError:
            if self._children is None:
                raise  # the first fetch: the path must exist
            children = None  # the node is gone (e.g. the test's teardown)
            self._stopped = True
        except KazooException:
            if self._children is None:
                raise
            self._stopped = True  # the client was stopped
            return
        with self._cond:
            self._children = None if children is None else sorted(children)
            self._cond.notify_all()

    def wait_for(self, predicate, timeout=WAIT, what="children"):
        with self._cond:
            if not self._cond.wait_for(lambda: self._children is not None and predicate(self._children), timeout):
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what} of {self.path}; children {self._children!r}"
                )
            return list(self._children)

    def stop(self):
        self._stopped = True


def wait_until(predicate, timeout=WAIT, interval=0.02, what="condition"):
    """Polls predicate until true, bounded; only where no event exists."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Proxy:
    """A TCP proxy in front of the server that can cut clients off.

    ``pause()`` closes every proxied connection and refuses new ones (accepts
    and closes at once) until ``resume()``: for the server the client has
    vanished without closing its session, for the client the server is
    unreachable."""

    def __init__(self, target):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.address = "127.0.0.1:%d" % self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._paused = False
        self._closed = False
        self._sockets = set()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    client.close()
                    return
                if self._paused:
                    client.close()
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            self._drop(s)

    def _drop(self, s):
        with self._lock:
            self._sockets.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass

    def pause(self):
        with self._lock:
            self._paused = True
            sockets = list(self._sockets)
        for s in sockets:
            self._drop(s)

    def resume(self):
        with self._lock:
            self._paused = False

    def close(self):
        with self._lock:
            self._closed = True
        self.pause()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._listener.close()
