"""Screenshots of the web UI for the docs (docs/ui/*.png): starts a zoocore
server on free loopback ports with a small Kafka-like tree, opens each view
in headless Chromium and saves it. Run by scripts/ui-screenshots.sh."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.security import make_digest_acl
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "ui"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, workdir):
    client, admin = free_port(), free_port()
    (workdir / "data").mkdir()
    cfg = workdir / "zoo.cfg"
    cfg.write_text(
        f"tickTime=2000\ndataDir={workdir / 'data'}\nclientPort={client}\nclientPortAddress=127.0.0.1\n"
        f"admin.enableServer=true\nadmin.serverAddress=127.0.0.1\nadmin.serverPort={admin}\n"
    )
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen([str(binary), "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", client)) == 0:
                return proc, f"127.0.0.1:{client}", f"http://127.0.0.1:{admin}/ui/"
        time.sleep(0.05)
    proc.kill()
    sys.exit(f"zoocore did not start; see {workdir / 'server.log'}")


def fill(zk):
    for broker in range(3):
        zk.create(f"/brokers/ids/{broker}", json.dumps({
            "listener_security_protocol_map": {"PLAINTEXT": "PLAINTEXT"},
            "endpoints": [f"PLAINTEXT://broker-{broker}:9092"],
            "jmx_port": -1, "host": f"broker-{broker}", "timestamp": "1764979200000",
            "port": 9092, "version": 5,
        }).encode(), makepath=True, ephemeral=True)
    for topic in ("orders", "payments", "clicks"):
        zk.create(f"/brokers/topics/{topic}", json.dumps(
            {"version": 3, "partitions": {str(p): [p % 3, (p + 1) % 3] for p in range(6)}}).encode(), makepath=True)
        for p in range(6):
            zk.create(f"/brokers/topics/{topic}/partitions/{p}/state",
                      json.dumps({"controller_epoch": 1, "leader": p % 3, "isr": [p % 3, (p + 1) % 3]}).encode(),
                      makepath=True)
    zk.create("/controller", b'{"version":2,"brokerid":0,"timestamp":"1764979200000"}', ephemeral=True)
    zk.create("/config/changes", makepath=True)
    zk.create("/admin")
    zk.create("/admin/secrets", b"only for admins", acl=[make_digest_acl("admin", "secret", all=True)])


def main():
    binary = Path(os.environ.get("ZOOCORE_BIN", REPO / "target" / "debug" / "zoocore"))
    workdir = Path(tempfile.mkdtemp(prefix="zoocore-screenshots-"))
    proc, hosts, url = start_server(binary, workdir)
    zk = KazooClient(hosts=hosts)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1280,800", "--hide-scrollbars",
                 f"--user-data-dir={workdir / 'chromium'}"):
        options.add_argument(flag)
    os.environ["SE_OFFLINE"] = "true"
    driver = None
    try:
        zk.start(timeout=15)
        fill(zk)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        OUT.mkdir(parents=True, exist_ok=True)

        def view(fragment, ready, name):
            driver.get(url + fragment)
            WebDriverWait(driver, 20).until(ready, message=name)
            driver.save_screenshot(str(OUT / f"{name}.png"))
            print(f"ui-screenshots: docs/ui/{name}.png")

        def shows(element_id):
            return lambda d: d.find_elements(By.ID, element_id)

        view("#/brokers/topics/orders/partitions/0/state", shows("node-data"), "node")
        driver.find_element(By.CSS_SELECTOR, 'button[data-view="json"]').click()
        driver.save_screenshot(str(OUT / "node-json.png"))
        print("ui-screenshots: docs/ui/node-json.png")
        view("#/brokers/ids/1", shows("ephemeral-owner"), "ephemeral")
        view("#/admin/secrets", shows("data-error"), "acl-protected")
        view("#/brokers/topics/orders", shows("edit-data"), "edit")
        for _ in range(200):
            zk.get("/brokers/topics/orders")
        view("#server", shows("latency"), "server")
    finally:
        if driver is not None:
            driver.quit()
        zk.stop()
        zk.close()
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
