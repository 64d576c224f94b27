"""A throwaway MIT Kerberos realm for the GSSAPI tests: Debian's krb5kdc on a
free loopback port, its database, a service principal per server host name,
client principals with keytabs, and a krb5.conf that points only at it (no
DNS, no reverse lookups: ``zookeeper@127.0.0.1`` is ``zookeeper/127.0.0.1``)."""

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import free_port

REALM = "ZOOCORE.TEST"
SERVICE = f"zookeeper/127.0.0.1@{REALM}"
START_TIMEOUT = 30.0


class Realm:
    def __init__(self, workdir, port):
        self.dir = workdir
        self.port = port
        self.krb5_conf = workdir / "krb5.conf"
        self.caches = f"DIR:{workdir / 'caches'}"
        (workdir / "caches").mkdir()
        self.env = dict(os.environ, KRB5_CONFIG=str(self.krb5_conf), KRB5_KDC_PROFILE=str(workdir / "kdc.conf"))

    def run(self, *args, env=None):
        done = subprocess.run(
            args, env=env or self.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def principal(self, name, keytab=None):
        """Adds principal `name` with a random key; writes it to `keytab`
        (default: <dir>/<first part>.keytab) and returns that path."""
        keytab = keytab or self.dir / (name.split("/")[0].split("@")[0] + ".keytab")
        self.run("kadmin.local", "-r", REALM, "-q", f"addprinc -randkey {name}")
        self.run("kadmin.local", "-r", REALM, "-q", f"ktadd -k {keytab} {name}")
        return keytab

    def login(self, name, keytab):
        """Puts `name`'s TGT in the realm's cache collection (`self.caches`,
        a KRB5CCNAME), where a client names the principal it logs in as."""
        self.run("kinit", "-kt", str(keytab), name, env=dict(self.env, KRB5CCNAME=self.caches))


@contextlib.contextmanager
def kdc():
    """Starts the realm's KDC; yields the Realm; stops it and removes its
    files."""
    workdir = Path(tempfile.mkdtemp(prefix="kazoo-kdc-"))
    port = free_port()
    realm = Realm(workdir, port)
    realm.krb5_conf.write_text(
        f"""[libdefaults]
    default_realm = {REALM}
    dns_lookup_realm = false
    dns_lookup_kdc = false
    dns_canonicalize_hostname = false
    rdns = false
    udp_preference_limit = 1
    ticket_lifetime = 1h
[realms]
    {REALM} = {{
        kdc = 127.0.0.1:{port}
    }}
"""
    )
    (workdir / "kdc.conf").write_text(
        f"""[kdcdefaults]
    kdc_listen = 127.0.0.1:{port}
    kdc_tcp_listen = 127.0.0.1:{port}
[realms]
    {REALM} = {{
        database_name = {workdir}/principal
        key_stash_file = {workdir}/stash
        acl_file = {workdir}/kadm5.acl
        max_life = 1h
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}
[logging]
    kdc = FILE:{workdir}/kdc.log
"""
    )
    proc = None
    try:
        realm.run("kdb5_util", "create", "-s", "-r", REALM, "-P", "zoocore-master-key")
        log = open(workdir / "kdc.stdout", "wb")
        proc = subprocess.Popen(
            ["krb5kdc", "-n", "-r", REALM], env=realm.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"krb5kdc exited with {proc.returncode}: {(workdir / 'kdc.stdout').read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("krb5kdc did not listen within 30 s")
            time.sleep(0.05)
        yield realm
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
