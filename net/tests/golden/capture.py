#!/usr/bin/env python3
"""Capture golden ZooKeeper wire frames from a real client talking to a real server.

Starts Apache ZooKeeper (Debian package, via scripts/zk-classpath.sh) on a free
loopback port, puts a recording TCP proxy in front of it on another free port,
and drives a kazoo client through the proxy. Every frame (4-byte big-endian
length prefix + payload) is recorded separately with its direction. Selected
frames are written as <name>.bin next to this file, together with
expected.json (decoded fields) and README.md (how/what was captured, hex
breakdown per file). The decoder below is written independently from the
ZooKeeper 3.8 jute definitions (zookeeper-jute/src/main/resources/zookeeper.jute).

Re-capture (from the repo root, after scripts/install-deps.sh):

    .venv/bin/python net/tests/golden/capture.py

Session ids, passwords, zxids and times vary per run; expected.json and the
README are regenerated together with the .bin files so they always agree.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version as pkg_version

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SCRIPTS = os.path.join(REPO, "scripts")

# ---------------------------------------------------------------------------
# ZooKeeper constants (ZooDefs.OpCode, KeeperException.Code, Watcher.Event)
# ---------------------------------------------------------------------------
OPCODES = {
    0: "notification", 1: "create", 2: "delete", 3: "exists", 4: "getData",
    5: "setData", 6: "getACL", 7: "setACL", 8: "getChildren", 9: "sync",
    11: "ping", 12: "getChildren2", 13: "check", 14: "multi", 15: "create2",
    16: "reconfig", 17: "checkWatches", 18: "removeWatches",
    19: "createContainer", 20: "deleteContainer", 21: "createTTL",
    22: "multiRead", 100: "auth", 101: "setWatches", 102: "sasl",
    103: "getEphemerals", 104: "getAllChildrenNumber", 105: "setWatches2",
    106: "addWatch", 107: "whoAmI", -10: "createSession", -11: "closeSession",
    -1: "error",
}
ERRORS = {
    0: "OK", -1: "SYSTEMERROR", -2: "RUNTIMEINCONSISTENCY",
    -3: "DATAINCONSISTENCY", -4: "CONNECTIONLOSS", -5: "MARSHALLINGERROR",
    -6: "UNIMPLEMENTED", -7: "OPERATIONTIMEOUT", -8: "BADARGUMENTS",
    -13: "NEWCONFIGNOQUORUM", -14: "RECONFIGINPROGRESS",
    -100: "APIERROR", -101: "NONODE", -102: "NOAUTH", -103: "BADVERSION",
    -108: "NOCHILDRENFOREPHEMERALS", -110: "NODEEXISTS", -111: "NOTEMPTY",
    -112: "SESSIONEXPIRED", -113: "INVALIDCALLBACK", -114: "INVALIDACL",
    -115: "AUTHFAILED", -118: "SESSIONMOVED", -119: "NOTREADONLY",
    -120: "EPHEMERALONLOCALSESSION", -121: "NOWATCHER",
    -122: "RECONFIGDISABLED", -123: "SESSIONCLOSEDREQUIRESASLAUTH",
    -125: "QUOTAEXCEEDED", -127: "THROTTLEDOP",
}
EVENT_TYPES = {-1: "None", 1: "NodeCreated", 2: "NodeDeleted",
               3: "NodeDataChanged", 4: "NodeChildrenChanged",
               5: "DataWatchRemoved", 6: "ChildWatchRemoved",
               7: "PersistentWatchRemoved"}
KEEPER_STATES = {-1: "Unknown", 0: "Disconnected", 1: "NoSyncConnected",
                 3: "SyncConnected", 4: "AuthFailed", 5: "ConnectedReadOnly",
                 6: "SaslAuthenticated", -112: "Expired", 7: "Closed"}
NOTIFICATION_XID, PING_XID, AUTH_XID, SET_WATCHES_XID = -1, -2, -4, -8

STAT_FIELDS = [  # org.apache.zookeeper.data.Stat
    ("czxid", "long"), ("mzxid", "long"), ("ctime", "long"), ("mtime", "long"),
    ("version", "int"), ("cversion", "int"), ("aversion", "int"),
    ("ephemeralOwner", "long"), ("dataLength", "int"), ("numChildren", "int"),
    ("pzxid", "long"),
]


# ---------------------------------------------------------------------------
# Independent jute decoder (big-endian; buffer/ustring = int length + bytes,
# length -1 = null; boolean = 1 byte; vector = int count (-1 = null) + items)
# ---------------------------------------------------------------------------
class DecodeError(Exception):
    pass


class Reader:
    def __init__(self, buf, base=0):
        self.buf = bytes(buf)
        self.pos = 0
        self.base = base  # offset of buf within the frame file (for notes)
        self.notes = []   # (offset, raw bytes, field, value)

    def _take(self, n, field):
        if n < 0 or self.pos + n > len(self.buf):
            raise DecodeError(f"short read for {field}: need {n} at {self.pos}, have {len(self.buf) - self.pos}")
        raw = self.buf[self.pos:self.pos + n]
        off = self.pos
        self.pos += n
        return off, raw

    def _note(self, off, raw, field, value):
        self.notes.append((self.base + off, raw, field, value))

    def int(self, field):
        off, raw = self._take(4, field)
        v = struct.unpack(">i", raw)[0]
        self._note(off, raw, field, v)
        return v

    def long(self, field):
        off, raw = self._take(8, field)
        v = struct.unpack(">q", raw)[0]
        self._note(off, raw, field, v)
        return v

    def bool(self, field):
        off, raw = self._take(1, field)
        v = raw[0] != 0
        self._note(off, raw, field, v)
        return v

    def buffer(self, field):
        n = self.int(field + ".len")
        if n == -1:
            return None
        off, raw = self._take(n, field)
        self._note(off, raw, field, raw)
        return raw

    def ustring(self, field):
        n = self.int(field + ".len")
        if n == -1:
            return None
        off, raw = self._take(n, field)
        s = raw.decode("utf-8")
        self._note(off, raw, field, s)
        return s

    def vector(self, field, item):
        n = self.int(field + ".count")
        if n == -1:
            return None
        return [item(f"{field}[{i}]") for i in range(n)]

    def stat(self, field="stat"):
        out = {}
        for name, kind in STAT_FIELDS:
            out[name] = getattr(self, kind)(f"{field}.{name}")
        return out

    def acl(self, field):
        return {"perms": self.int(field + ".perms"),
                "scheme": self.ustring(field + ".id.scheme"),
                "id": self.ustring(field + ".id.id")}

    def remaining(self):
        return len(self.buf) - self.pos

    def done(self):
        if self.remaining():
            raise DecodeError(f"{self.remaining()} trailing bytes: {self.buf[self.pos:].hex()}")


def data_fields(d, raw):
    """data as string (utf-8) plus hex, None for a null buffer."""
    if raw is None:
        d["data"] = None
        d["data_hex"] = None
    else:
        try:
            d["data"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            d["data"] = None
        d["data_hex"] = raw.hex()


def decode_op_request(r, op, d, prefix=""):
    """Body of a request record for opcode `op` (also used for multi ops)."""
    p = prefix
    if op in (1, 15, 19, 21):  # CreateRequest / CreateTTLRequest
        d["path"] = r.ustring(p + "path")
        data_fields(d, r.buffer(p + "data"))
        d["acl"] = r.vector(p + "acl", r.acl)
        d["flags"] = r.int(p + "flags")
        if op == 21:
            d["ttl"] = r.long(p + "ttl")
    elif op in (2, 13):  # DeleteRequest / CheckVersionRequest
        d["path"] = r.ustring(p + "path")
        d["version"] = r.int(p + "version")
    elif op in (3, 4, 8, 12):  # Exists/GetData/GetChildren/GetChildren2
        d["path"] = r.ustring(p + "path")
        d["watch"] = r.bool(p + "watch")
    elif op == 5:  # SetDataRequest
        d["path"] = r.ustring(p + "path")
        data_fields(d, r.buffer(p + "data"))
        d["version"] = r.int(p + "version")
    elif op in (6, 9, 20, 22):  # GetACL / Sync / (paths)
        d["path"] = r.ustring(p + "path")
    elif op in (11, -11):  # ping / closeSession: header only
        pass
    elif op == 14:
        d["ops"], d["end"] = decode_multi_request(r)
    else:
        raise DecodeError(f"no request decoder for opcode {op}")


def decode_multi_request(r):
    ops = []
    i = 0
    while True:
        f = f"op[{i}]."
        t = r.int(f + "header.type")
        done = r.bool(f + "header.done")
        err = r.int(f + "header.err")
        if done:
            return ops, {"type": t, "done": done, "err": err}
        op = {"type": t, "opname": OPCODES.get(t, "?"), "done": done, "err": err}
        decode_op_request(r, t, op, prefix=f)
        ops.append(op)
        i += 1


def decode_op_response(r, op, d, prefix=""):
    p = prefix
    if op in (1, 19):  # CreateResponse
        d["path"] = r.ustring(p + "path")
    elif op in (15, 21):  # Create2Response
        d["path"] = r.ustring(p + "path")
        d["stat"] = r.stat(p + "stat")
    elif op == 4:  # GetDataResponse
        data_fields(d, r.buffer(p + "data"))
        d["stat"] = r.stat(p + "stat")
    elif op in (3, 5, 7):  # ExistsResponse / SetDataResponse / SetACLResponse
        d["stat"] = r.stat(p + "stat")
    elif op in (2, 13, 11, -11, 0):  # no body
        pass
    elif op in (8,):
        d["children"] = r.vector(p + "children", r.ustring)
    elif op == 12:
        d["children"] = r.vector(p + "children", r.ustring)
        d["stat"] = r.stat(p + "stat")
    elif op == 14:
        d["results"], d["end"] = decode_multi_response(r)
    else:
        raise DecodeError(f"no response decoder for opcode {op}")


def decode_multi_response(r):
    res = []
    i = 0
    while True:
        f = f"result[{i}]."
        t = r.int(f + "header.type")
        done = r.bool(f + "header.done")
        err = r.int(f + "header.err")
        if done:
            return res, {"type": t, "done": done, "err": err}
        item = {"type": t, "opname": OPCODES.get(t, "?"), "done": done, "err": err,
                "errname": ERRORS.get(err, "?")}
        if t == -1:  # ErrorResult: ErrorResponse{int err}
            item["error_err"] = r.int(f + "error.err")
        else:
            decode_op_response(r, t, item, prefix=f)
        res.append(item)
        i += 1


def split_frame(frame):
    if len(frame) < 4:
        raise DecodeError("frame shorter than its length prefix")
    (n,) = struct.unpack(">i", frame[:4])
    if n != len(frame) - 4:
        raise DecodeError(f"length prefix {n} != payload {len(frame) - 4}")
    return n, frame[4:]


def decode_connect_request(frame):
    n, body = split_frame(frame)
    r = Reader(body, base=4)
    d = {"kind": "ConnectRequest", "direction": "client_to_server", "length": n}
    d["protocolVersion"] = r.int("protocolVersion")
    d["lastZxidSeen"] = r.long("lastZxidSeen")
    d["timeOut"] = r.int("timeOut")
    d["sessionId"] = r.long("sessionId")
    pw = r.buffer("passwd")
    d["passwd_len"] = None if pw is None else len(pw)
    d["passwd_hex"] = None if pw is None else pw.hex()
    # readOnly is not in zookeeper.jute's ConnectRequest, but every 3.x client
    # appends it after the record (ZooKeeper 3.4+ servers read it if present).
    d["readOnly_present"] = r.remaining() > 0
    if d["readOnly_present"]:
        d["readOnly"] = r.bool("readOnly")
    r.done()
    return d, r.notes


def decode_connect_response(frame):
    n, body = split_frame(frame)
    r = Reader(body, base=4)
    d = {"kind": "ConnectResponse", "direction": "server_to_client", "length": n}
    d["protocolVersion"] = r.int("protocolVersion")
    d["timeOut"] = r.int("timeOut")
    d["sessionId"] = r.long("sessionId")
    pw = r.buffer("passwd")
    d["passwd_len"] = None if pw is None else len(pw)
    d["passwd_hex"] = None if pw is None else pw.hex()
    d["readOnly_present"] = r.remaining() > 0
    if d["readOnly_present"]:
        d["readOnly"] = r.bool("readOnly")
    r.done()
    return d, r.notes


def decode_request(frame):
    n, body = split_frame(frame)
    r = Reader(body, base=4)
    d = {"kind": "Request", "direction": "client_to_server", "length": n}
    d["xid"] = r.int("header.xid")
    d["opcode"] = r.int("header.type")
    d["opname"] = OPCODES.get(d["opcode"], "?")
    decode_op_request(r, d["opcode"], d)
    r.done()
    return d, r.notes


def decode_response(frame, opcode):
    """Server->client frame; `opcode` is that of the matching request (by xid)."""
    n, body = split_frame(frame)
    r = Reader(body, base=4)
    d = {"kind": "Response", "direction": "server_to_client", "length": n}
    d["xid"] = r.int("header.xid")
    d["zxid"] = r.long("header.zxid")
    d["err"] = r.int("header.err")
    d["errname"] = ERRORS.get(d["err"], "?")
    if d["xid"] == NOTIFICATION_XID:
        d["kind"] = "WatcherEvent"
        d["type"] = r.int("event.type")
        d["typename"] = EVENT_TYPES.get(d["type"], "?")
        d["state"] = r.int("event.state")
        d["statename"] = KEEPER_STATES.get(d["state"], "?")
        d["path"] = r.ustring("event.path")
    else:
        d["opcode"] = opcode
        d["opname"] = OPCODES.get(opcode, "?")
        # A failed non-multi request carries only the ReplyHeader.
        if r.remaining() or (d["err"] == 0 and opcode not in (2, 13, 11, -11)):
            decode_op_response(r, opcode, d)
    r.done()
    return d, r.notes


# ---------------------------------------------------------------------------
# Recording proxy
# ---------------------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.frames = []  # dicts: seq, conn, direction, t, bytes
        self.seq = 0
        self.cond = threading.Condition(self.lock)

    def add(self, conn, direction, frame):
        with self.cond:
            self.frames.append({"seq": self.seq, "conn": conn, "direction": direction,
                                "t": time.monotonic(), "bytes": frame})
            self.seq += 1
            self.cond.notify_all()

    def snapshot(self):
        with self.lock:
            return list(self.frames)


class Proxy:
    def __init__(self, upstream_port, recorder):
        self.upstream = ("127.0.0.1", upstream_port)
        self.rec = recorder
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.conns = 0
        self.socks = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.conns += 1
            cid = self.conns
            u = socket.create_connection(self.upstream)
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks += [c, u]
            threading.Thread(target=self._pump, args=(cid, "client_to_server", c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(cid, "server_to_client", u, c), daemon=True).start()

    def _pump(self, cid, direction, src, dst):
        buf = bytearray()
        while True:
            try:
                chunk = src.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                if buf:
                    self.rec.add(cid, direction + "_partial", bytes(buf))
                return
            dst.sendall(chunk)  # forward unchanged, then split into frames
            buf += chunk
            while len(buf) >= 4:
                (n,) = struct.unpack(">i", buf[:4])
                if n < 0 or len(buf) < 4 + n:
                    break
                self.rec.add(cid, direction, bytes(buf[:4 + n]))
                del buf[:4 + n]

    def close(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------
# ZooKeeper server
# ---------------------------------------------------------------------------
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def four_letter(port, cmd, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(cmd.encode())
            out = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                out += b
            return out.decode(errors="replace")
    except OSError:
        return ""


class ZooKeeper:
    MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="zk-golden-")
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "zoo.cfg")
        self.cfg_text = (f"tickTime=2000\ndataDir={self.dir}/data\nclientPort={self.port}\n"
                         "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                         "4lw.commands.whitelist=*\nmaxClientCnxns=0\n")
        with open(self.cfg, "w") as f:
            f.write(self.cfg_text)
        cp = subprocess.check_output([os.path.join(SCRIPTS, "zk-classpath.sh")], text=True).strip()
        self.cmd = ["java", "-Dzookeeper.extendedTypesEnabled=true",
                    "-Dlog4j.configuration=file:" + os.path.join(SCRIPTS, "zk-log4j.properties"),
                    "-cp", cp, self.MAIN, self.cfg]
        self.log = open(os.path.join(self.dir, "zk.log"), "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.version = None
        while time.monotonic() - t0 < 30:
            if self.proc.poll() is not None:
                raise RuntimeError("zookeeper exited: " + open(os.path.join(self.dir, "zk.log")).read())
            out = four_letter(self.port, "srvr")
            if "Mode:" in out:
                self.version = out.splitlines()[0].split(":", 1)[1].strip()
                break
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("zookeeper did not start within 30 s")
        self.startup_secs = time.monotonic() - t0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------
def run_scenario(zk_port, proxy_port, rec):
    from kazoo.client import KazooClient
    from kazoo.exceptions import NodeExistsError, NoNodeError, BadVersionError

    log = []
    c1 = KazooClient(hosts=f"127.0.0.1:{proxy_port}", timeout=10.0)
    c1.start(timeout=15)
    log.append("c1 connected (via proxy)")

    c1.create("/golden", b"hello")                     # plain create (opcode 1)
    c1.create("/golden2", b"hello", include_data=True)  # create2 (opcode 15)
    try:
        c1.create("/golden", b"again")                  # NODEEXISTS
        raise AssertionError("expected NodeExistsError")
    except NodeExistsError:
        pass

    fired = threading.Event()
    events = []

    def watcher(ev):
        events.append(ev)
        fired.set()

    data, stat = c1.get("/golden", watch=watcher)      # getData, watch=true
    assert data == b"hello", data
    try:
        c1.get("/golden/missing")                       # NONODE
        raise AssertionError("expected NoNodeError")
    except NoNodeError:
        pass

    # Successful multi: all four op kinds kazoo's transaction supports.
    # (setData targets /golden2 so the data watch on /golden stays armed for
    # the second client's setData below.)
    t = c1.transaction()
    t.create("/golden/a", b"a")
    t.create("/golden/b", b"b")
    t.set_data("/golden2", b"world", version=0)
    t.delete("/golden/b", version=0)
    t.check("/golden/a", 0)
    res = t.commit()
    log.append(f"multi ok: {res!r}")
    assert res[0] == "/golden/a" and res[1] == "/golden/b", res

    # Failing multi: op0 would succeed, op1 has a wrong version, op2 never runs.
    t = c1.transaction()
    t.set_data("/golden/a", b"x", version=-1)
    t.check("/golden2", 99)
    t.create("/golden/c", b"c")
    res = t.commit()
    log.append(f"multi error: {res!r}")
    assert any(isinstance(x, BadVersionError) for x in res), res
    assert not c1.exists("/golden/c")

    c1.set("/golden2", b"again", version=1)       # plain setData

    # Second client (direct to the server) triggers c1's data watch.
    c2 = KazooClient(hosts=f"127.0.0.1:{zk_port}", timeout=10.0)
    c2.start(timeout=15)
    c2.set("/golden", b"changed")
    if not fired.wait(10):
        raise AssertionError("no watch notification")
    log.append(f"watch fired: {events[0]!r}")
    c2.stop()
    c2.close()

    # Wait for at least one ping round trip on c1 (kazoo pings every ~3.3 s
    # of idle with a 10 s session timeout).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        frames = rec.snapshot()
        pings = [f for f in frames if f["conn"] == 1 and f["direction"] == "server_to_client"
                 and len(f["bytes"]) >= 8 and struct.unpack(">i", f["bytes"][4:8])[0] == PING_XID]
        if pings:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("no ping seen")

    c1.stop()   # sends closeSession
    c1.close()
    time.sleep(0.3)
    return log


def pick_frames(frames):
    """Decode connection 1's frames, pair responses with requests by xid,
    and choose the golden frames. Returns (named, transcript)."""
    c1 = [f for f in frames if f["conn"] == 1]
    reqs = [f for f in c1 if f["direction"] == "client_to_server"]
    resps = [f for f in c1 if f["direction"] == "server_to_client"]
    bad = [f for f in c1 if f["direction"].endswith("_partial")]
    if bad:
        raise DecodeError(f"partial frames left over: {bad}")

    transcript = []
    named = {}
    xid_op = {}
    decoded_reqs = []
    for i, f in enumerate(reqs):
        if i == 0:
            d, notes = decode_connect_request(f["bytes"])
        else:
            d, notes = decode_request(f["bytes"])
            xid_op[d["xid"]] = d["opcode"]
        decoded_reqs.append((f, d, notes))
    decoded_resps = []
    for i, f in enumerate(resps):
        if i == 0:
            d, notes = decode_connect_response(f["bytes"])
        else:
            xid = struct.unpack(">i", f["bytes"][4:8])[0]
            op = xid_op.get(xid)
            if op is None and xid != NOTIFICATION_XID:
                raise DecodeError(f"response xid {xid} has no request")
            d, notes = decode_response(f["bytes"], op)
        decoded_resps.append((f, d, notes))

    for f, d, _ in sorted(decoded_reqs + decoded_resps, key=lambda x: x[0]["seq"]):
        transcript.append({"seq": f["seq"], "direction": f["direction"],
                           "xid": d.get("xid"), "opcode": d.get("opcode"),
                           "opname": d.get("opname", d["kind"]), "err": d.get("err"),
                           "hex": f["bytes"].hex()})

    def req_where(pred):
        for f, d, notes in decoded_reqs:
            if d["kind"] == "Request" and pred(d):
                return f, d, notes
        raise LookupError("no matching request")

    def resp_for(xid):
        for f, d, notes in decoded_resps:
            if d.get("xid") == xid and d["kind"] == "Response":
                return f, d, notes
        raise LookupError(f"no response for xid {xid}")

    def pair(name, pred):
        f, d, notes = req_where(pred)
        named[name + "_request"] = (f, d, notes)
        named[name + "_response"] = resp_for(d["xid"])

    named["connect_request"] = decoded_reqs[0]
    named["connect_response"] = decoded_resps[0]
    pair("create", lambda d: d["opcode"] == 1 and d["path"] == "/golden" and d["data"] == "hello")
    pair("create2", lambda d: d["opcode"] == 15)
    pair("create_nodeexists", lambda d: d["opcode"] == 1 and d["path"] == "/golden" and d["data"] == "again")
    pair("get_data", lambda d: d["opcode"] == 4 and d["path"] == "/golden")
    pair("get_data_nonode", lambda d: d["opcode"] == 4 and d["path"] == "/golden/missing")
    multis = [d for _, d, _ in decoded_reqs if d.get("opcode") == 14]
    pair("multi", lambda d: d is multis[0])
    pair("multi_error", lambda d: d is multis[1])
    pair("set_data", lambda d: d["opcode"] == 5)
    pair("ping", lambda d: d["opcode"] == 11)
    pair("close", lambda d: d["opcode"] == -11)
    for f, d, notes in decoded_resps:
        if d["kind"] == "WatcherEvent":
            named["watch_notification"] = (f, d, notes)
            break
    else:
        raise LookupError("no watch notification frame")
    return named, transcript


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------
ORDER = [
    "connect_request", "connect_response",
    "create_request", "create_response",
    "create2_request", "create2_response",
    "create_nodeexists_request", "create_nodeexists_response",
    "get_data_request", "get_data_response",
    "get_data_nonode_request", "get_data_nonode_response",
    "multi_request", "multi_response",
    "multi_error_request", "multi_error_response",
    "set_data_request", "set_data_response",
    "watch_notification",
    "ping_request", "ping_response",
    "close_request", "close_response",
]


def fmt_value(v):
    if isinstance(v, bytes):
        try:
            t = v.decode("utf-8")
            if t.isprintable():
                return json.dumps(t)
        except UnicodeDecodeError:
            pass
        return "0x" + v.hex()
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int) and abs(v) > 0xFFFF:
        return f"{v} (0x{v & 0xFFFFFFFFFFFFFFFF:x})"
    return json.dumps(v)


def breakdown(frame, notes):
    lines = [f"  0000  {frame[:4].hex():<32}  length = {struct.unpack('>i', frame[:4])[0]}"]
    for off, raw, field, value in notes:
        h = raw.hex()
        if len(h) > 32:
            h = h[:28] + "..."
        lines.append(f"  {off:04x}  {h:<32}  {field} = {fmt_value(value)}")
    return "\n".join(lines)


def summary(name, d):
    k = d["kind"]
    if k == "ConnectRequest":
        return (f"ConnectRequest: protocolVersion={d['protocolVersion']}, lastZxidSeen={d['lastZxidSeen']}, "
                f"timeOut={d['timeOut']}, sessionId={d['sessionId']}, passwd {d['passwd_len']} bytes, "
                f"readOnly byte {'present (=' + str(d['readOnly']).lower() + ')' if d['readOnly_present'] else 'absent'}")
    if k == "ConnectResponse":
        return (f"ConnectResponse: protocolVersion={d['protocolVersion']}, timeOut={d['timeOut']}, "
                f"sessionId=0x{d['sessionId'] & 0xFFFFFFFFFFFFFFFF:x}, passwd {d['passwd_len']} bytes, "
                f"readOnly byte {'present (=' + str(d['readOnly']).lower() + ')' if d['readOnly_present'] else 'absent'}")
    if k == "WatcherEvent":
        return (f"notification: xid={d['xid']}, zxid={d['zxid']}, err={d['err']}; WatcherEvent type={d['type']} "
                f"({d['typename']}), state={d['state']} ({d['statename']}), path={d['path']!r}")
    if k == "Request":
        return f"request: opcode={d['opcode']} ({d['opname']}), xid={d['xid']}"
    return (f"response to opcode {d['opcode']} ({d['opname']}): xid={d['xid']}, zxid=0x{d['zxid'] & 0xFFFFFFFFFFFFFFFF:x}, "
            f"err={d['err']} ({d['errname']})")


def jsonable(d):
    return {k: v for k, v in d.items()}


README_HEAD = """# Golden wire frames (ZooKeeper client protocol)

Real bytes exchanged between a real client ([kazoo]({kazoo_url}) {kazoo}) and a
real server (Apache ZooKeeper {zk}, Debian package `zookeeper`, started
standalone with `ZooKeeperServerMain`), recorded by a TCP proxy that splits
each direction into frames.

**Generated by `capture.py` — do not edit by hand.** Re-capture from the repo
root (needs `scripts/install-deps.sh` first):

    .venv/bin/python net/tests/golden/capture.py

Each `*.bin` is one complete frame **including** the 4-byte big-endian length
prefix. `expected.json` holds the decoded fields of every file (decoded by the
independent Python jute decoder in `capture.py`, written from ZooKeeper 3.8's
`zookeeper.jute`); `transcript.json` is the full ordered frame log of the
recorded connection (hex), pings included.

Session ids, passwords, zxids and times change on every capture; the `.bin`
files, `expected.json` and this README are always rewritten together.

Captured: {when}. ZooKeeper server command (JVM up and serving after {startup:.2f} s):

    {cmd}

(the `-cp` value is what `scripts/zk-classpath.sh` prints) with this `zoo.cfg`:

{cfg}

## Scenario (client 1, through the proxy; 10 s session timeout)

1. connect
2. `create("/golden", b"hello")` — plain create, **opcode 1**; kazoo only
   sends create2 (**opcode 15**) for `create(..., include_data=True)`, used for
   `/golden2`. Kazoo's `transaction().create` also uses opcode 1 inside multi.
3. `create("/golden", b"again")` → NODEEXISTS (-110)
4. `get("/golden", watch=...)` — getData with watch=true (opcode 4)
5. `get("/golden/missing")` → NONODE (-101)
6. multi (opcode 14): create /golden/a, create /golden/b, setData /golden2
   (version 0), delete /golden/b (version 0), check /golden/a (version 0)
7. failing multi: setData /golden/a (version -1), check /golden2 (version 99,
   wrong → BADVERSION), create /golden/c
8. `set("/golden2", b"again", version=1)` (opcode 5)
9. a second client (direct, not recorded) does `set("/golden", b"changed")`
   → client 1 gets a NodeDataChanged notification (xid -1)
10. idle until kazoo sends a ping (opcode 11, xid -2), then close (opcode -11)

## Observations

- ConnectRequest: kazoo appends the `readOnly` boolean byte after the jute
  record (45-byte payload); ZooKeeper 3.8 also appends a `readOnly` byte to
  ConnectResponse (37-byte payload). Neither field is in zookeeper.jute.
- ACL for kazoo's default OPEN_ACL_UNSAFE: perms 31, scheme "world", id "anyone".
- Multi requests: every op's MultiHeader carries `err = -1`; the list ends with
  `{{type=-1, done=true, err=-1}}`. The response ends the same way.
- Successful multi results: MultiHeader `{{type=<op>, done=false, err=0}}`
  then the op's response body (create: path; setData: Stat; delete and
  check: nothing).
- Failed multi: the **ReplyHeader err is 0 (OK)**, not the failing op's error;
  every op result is an ErrorResult (MultiHeader `type=-1`, `err=<code>`,
  then ErrorResponse `err` repeating the code): ops before the failure report
  0 (OK), the failing op its error (-103 BADVERSION), later ops
  -2 (RUNTIMEINCONSISTENCY). Kazoo maps the 0 entry to RolledBackError.
- Failed writes consume a zxid: the NODEEXISTS create and the failed multi
  each got a new zxid in their ReplyHeader (error txns are logged). Reads
  reply with the last processed zxid. Session create/close consume zxids too
  (the second client's connect/set/close explain the jump before the ping).
- Watch notification: ReplyHeader `xid=-1, zxid=-1, err=0`, then WatcherEvent.
- Ping: request is just a RequestHeader `xid=-2, type=11`; the reply is a
  bare ReplyHeader `xid=-2` carrying the current zxid. closeSession (-11)
  uses a normal xid and gets a bare ReplyHeader.
- kazoo numbers xids 1, 2, 3, ... per connection (xid 8 above was an
  `exists` call used to check the failed multi; see transcript.json).
- `expected.json`: multi `ops`/`results` list the ops without the closing
  header, which is given as `end`; an ErrorResult's body is `error_err`.

## Files
"""


def write_outputs(named, transcript, meta):
    for old in os.listdir(HERE):
        if old.endswith(".bin"):
            os.remove(os.path.join(HERE, old))
    expected = {"_meta": meta, "frames": {}}
    sections = []
    for name in ORDER:
        f, d, notes = named[name]
        fn = name + ".bin"
        with open(os.path.join(HERE, fn), "wb") as out:
            out.write(f["bytes"])
        e = jsonable(d)
        e["file_size"] = len(f["bytes"])
        expected["frames"][fn] = e
        sections.append(f"### `{fn}` ({len(f['bytes'])} bytes, {d['direction'].replace('_', ' ')})\n\n"
                        f"{summary(name, d)}\n\n```\n  off   bytes                             field = value\n"
                        f"{breakdown(f['bytes'], notes)}\n```\n")
    with open(os.path.join(HERE, "expected.json"), "w") as out:
        json.dump(expected, out, indent=2)
        out.write("\n")
    with open(os.path.join(HERE, "transcript.json"), "w") as out:
        json.dump({"_meta": meta, "frames": transcript}, out, indent=1)
        out.write("\n")
    head = README_HEAD.format(kazoo=meta["kazoo_version"], zk=meta["zookeeper_version"],
                              kazoo_url="https://pypi.org/project/kazoo/",
                              when=meta["captured_at"], startup=meta["zookeeper_startup_secs"],
                              cmd=meta["zookeeper_command"],
                              cfg="\n".join("    " + l for l in meta["zoo_cfg"]))
    with open(os.path.join(HERE, "README.md"), "w") as out:
        out.write(head + "\n" + "\n".join(sections))


def main():
    rec = Recorder()
    zk = ZooKeeper()
    proxy = None
    try:
        print(f"zookeeper {zk.version} on 127.0.0.1:{zk.port} (serving after {zk.startup_secs:.2f}s)")
        proxy = Proxy(zk.port, rec)
        print(f"proxy on 127.0.0.1:{proxy.port}")
        for line in run_scenario(zk.port, proxy.port, rec):
            print(line)
    finally:
        if proxy:
            proxy.close()
        zk.stop()
    frames = rec.snapshot()
    named, transcript = pick_frames(frames)
    cmd = " ".join(zk.cmd).replace(REPO + "/", "")
    meta = {
        "zookeeper_version": zk.version,
        "zookeeper_startup_secs": round(zk.startup_secs, 2),
        "zookeeper_command": cmd.replace(zk.cfg, "<tmp>/zoo.cfg"),
        "zoo_cfg": [l.replace(zk.dir, "<tmp>") for l in zk.cfg_text.splitlines()],
        "kazoo_version": pkg_version("kazoo"),
        "python_version": sys.version.split()[0],
        "captured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "note": "numbers are jute values; longs may exceed 2^53 (use i64); "
                "data is the utf-8 string (null for a null buffer), data_hex the raw bytes",
    }
    write_outputs(named, transcript, meta)
    print(f"wrote {len(ORDER)} frames, expected.json, transcript.json, README.md to {HERE}")
    for name in ORDER:
        print(f"  {name}.bin: {summary(name, named[name][1])}")


if __name__ == "__main__":
    main()
