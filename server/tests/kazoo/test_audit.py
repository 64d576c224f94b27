"""The audit log (``audit.enable=true``) beside Apache ZooKeeper's: the same
kazoo session's writes, failures, a multi and its ephemerals' deletion at
close, then the lines of both files compared field by field (time stamps and
session ids aside). ZooKeeper's lines come from its ``Slf4jAuditLogger``
through the log4j layout its own ``log4j.properties`` gives the audit file."""

import re

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoNodeError
from kazoo.security import make_acl, make_digest_acl

from conftest import Cluster, running
from support import wait_until

LOG4J = """log4j.rootLogger=WARN, STDERR
log4j.appender.STDERR=org.apache.log4j.ConsoleAppender
log4j.appender.STDERR.Target=System.err
log4j.appender.STDERR.layout=org.apache.log4j.PatternLayout
log4j.appender.STDERR.layout.ConversionPattern=%d{{ISO8601}} %-5p [%t:%C{{1}}@%L] - %m%n
log4j.logger.org.apache.zookeeper.audit.Slf4jAuditLogger=INFO, RFAAUDIT
log4j.additivity.org.apache.zookeeper.audit.Slf4jAuditLogger=false
log4j.appender.RFAAUDIT=org.apache.log4j.FileAppender
log4j.appender.RFAAUDIT.File={path}
log4j.appender.RFAAUDIT.layout=org.apache.log4j.PatternLayout
log4j.appender.RFAAUDIT.layout.ConversionPattern=%d{{ISO8601}} %p %c{{2}}: %m%n
"""
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|ERROR) audit\.Slf4jAuditLogger: (.*)$")


def audited(kind, tmp_path):
    path = tmp_path / "zookeeper_audit.log"
    log4j = tmp_path / "log4j.properties"
    log4j.write_text(LOG4J.format(path=path))
    extra = f"audit.enable=true\nzoocore.auditLogFile={path}\n"
    return Cluster(kind, extra=extra, jvm_flags=[f"-Dlog4j.configuration=file:{log4j}"]), path


def lines(path):
    """(level, fields) of each line, session ids numbered in order of
    appearance."""
    sessions = {}
    out = []
    for raw in path.read_text().splitlines():
        m = LINE.match(raw)
        assert m, f"not an audit line: {raw!r}"
        fields = dict(f.split("=", 1) for f in m.group(2).split("\t"))
        if "session" in fields:
            fields["session"] = sessions.setdefault(fields["session"], f"s{len(sessions)}")
        out.append((m.group(1), fields))
    return out


def workload(hosts):
    c = KazooClient(hosts=hosts, auth_data=[("digest", "bob:pw")], timeout=10.0)
    c.start(timeout=15)
    c.create("/audit-a", b"x")
    c.create("/audit-s-", b"x", sequence=True, ephemeral=True)
    c.set("/audit-a", b"y")
    with pytest.raises(BadVersionError):
        c.set("/audit-a", b"z", version=7)
    c.set_acls("/audit-a", [make_digest_acl("bob", "pw", all=True), make_acl("world", "anyone", read=True)])
    t = c.transaction()
    t.create("/audit-m")
    t.set_data("/audit-a", b"q")
    t.delete("/audit-m")
    t.check("/audit-a", 2)
    t.commit()
    t = c.transaction()
    t.create("/audit-m2")
    t.delete("/audit-nope")
    t.commit()
    with pytest.raises(NoNodeError):
        c.delete("/audit-nope")
    c.delete("/audit-a")
    c.stop()
    c.close()


def run(kind, tmp_path):
    cluster, path = audited(kind, tmp_path)
    with running(cluster) as c:
        workload(c.hosts)
        # The ephemeral's deletion at close is the last line either writes.
        wait_until(lambda: "ephemeralZNodeDeletion" in path.read_text(), what="the close's audit line")
    return lines(path)


def test_audit_lines_match_zookeepers(tmp_path_factory):
    zookeeper = run("zookeeper", tmp_path_factory.mktemp("zk"))
    zoocore = run("zoocore", tmp_path_factory.mktemp("zc"))
    # zoocore also audits authentication (ZooKeeper 3.8 does not).
    auth = [f for _, f in zoocore if f["operation"] == "addAuth"]
    assert auth == [
        {"session": "s0", "user": "bob,127.0.0.1", "ip": "127.0.0.1", "operation": "addAuth", "scheme": "digest", "result": "success"}
    ]
    zoocore = [line for line in zoocore if line[1]["operation"] != "addAuth"]
    # Both start with serverStart as the user the server runs as; neither
    # writes serverStop, as the test kills both.
    assert zoocore[0][1]["operation"] == "serverStart"
    assert zoocore == zookeeper, "\n".join(f"{a}\n{b}\n" for a, b in zip(zookeeper, zoocore) if a != b)
    ops = [f["operation"] for _, f in zoocore]
    assert ops == [
        "serverStart",
        "create",
        "create",
        "setData",
        "setData",
        "setAcl",
        "create",
        "setData",
        "delete",
        "multiOperation",
        "delete",
        "delete",
        "ephemeralZNodeDeletionOnSessionCloseOrExpire",
    ], ops


def test_the_audit_log_is_off_by_default(cluster, make_client):
    if cluster.base != "zoocore":
        pytest.skip("zoocore's data dir")
    c = make_client()
    c.create("/audit-off", b"")
    c.delete("/audit-off")
    assert not list(cluster.workdir.rglob("zookeeper_audit.log"))
