"""The web UI at /ui/ on zoocore's admin port, in a real browser: Debian's
headless Chromium driven through chromedriver by Selenium, with kazoo as the
other client that makes and changes the data the UI shows. zoocore only:
Apache ZooKeeper has no such UI to compare with."""

import http.client as http_client
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import AuthFailedError
from kazoo.security import make_acl, make_digest_acl
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import Cluster, four_letter_word, free_port, running

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 20.0
BIG = 250


@pytest.fixture(scope="module")
def ui_server():
    admin = free_port()
    extra = f"admin.enableServer=true\nadmin.serverAddress=127.0.0.1\nadmin.serverPort={admin}\n"
    with running(Cluster("zoocore", extra=extra)) as c:
        zk = KazooClient(hosts=c.hosts, timeout=10.0)
        zk.connect_string = c.hosts
        zk.start(timeout=15)
        zk.create("/ui-tree/a", b"", makepath=True)
        zk.create("/ui-tree/b/c", b"hello", makepath=True)
        zk.create("/ui-json", b'{"broker":7,"host":"h"}')
        zk.create("/ui-big")
        transaction = zk.transaction()
        for i in range(BIG):
            transaction.create(f"/ui-big/n{i:04d}")
        transaction.commit()
        zk.create("/ui-secret", b"hidden", acl=[make_digest_acl("ui-user", "pw", all=True)])
        try:
            yield zk, f"http://127.0.0.1:{admin}/ui/"
        finally:
            zk.stop()
            zk.close()


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="zoocore-ui-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # Selenium must not look for drivers on the network.
    os.environ["SE_OFFLINE"] = "true"
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver, condition, what):
    """Waits (bounded) for `condition`; the page re-renders a node when it
    changes, so an element may go stale between two looks."""
    waiting = WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))
    return waiting.until(lambda d: condition(d), message=what)


def open_ui(driver, url, path=None):
    """Loads the UI afresh (not just a new fragment of the page shown)."""
    driver.get("about:blank")
    driver.get(url + ("#" + path if path else ""))
    wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true", "UI started")


def item(driver, path):
    found = driver.find_elements(By.CSS_SELECTOR, f'#tree li[data-path="{path}"]')
    return found[0] if found else None


def toggle(driver, path):
    item(driver, path).find_element(By.CSS_SELECTOR, ":scope > .row > .toggle").click()


def children_shown(driver, path):
    return [
        li.get_attribute("data-path")
        for li in item(driver, path).find_elements(By.CSS_SELECTOR, ":scope > ul > li[data-path]")
    ]


def node_path(driver):
    found = driver.find_elements(By.ID, "node-path")
    return found[0].text if found else None


def test_the_tree_expands_on_demand_and_pages_large_child_lists(ui_server, browser):
    _, url = ui_server
    open_ui(browser, url)
    # The root shows its children once opened (a deep link to / opens it).
    wait(browser, lambda d: item(d, "/ui-tree") is not None, "/ui-tree listed under /")
    assert item(browser, "/ui-tree/a") is None, "children are fetched only on expansion"
    toggle(browser, "/ui-tree")
    wait(browser, lambda d: children_shown(d, "/ui-tree") == ["/ui-tree/a", "/ui-tree/b"], "children of /ui-tree")
    leaf = item(browser, "/ui-tree/a").find_element(By.CSS_SELECTOR, ".toggle")
    inner = item(browser, "/ui-tree/b").find_element(By.CSS_SELECTOR, ".toggle")
    assert not leaf.is_enabled() and inner.is_enabled(), "only nodes with children expand"
    toggle(browser, "/ui-big")
    wait(browser, lambda d: len(children_shown(d, "/ui-big")) == 100, "first page of /ui-big")
    more = item(browser, "/ui-big").find_element(By.CSS_SELECTOR, ":scope > ul > .more")
    assert more.text == f"more ({BIG - 100} left)"
    more.click()
    wait(browser, lambda d: len(children_shown(d, "/ui-big")) == 200, "second page")
    shown = children_shown(browser, "/ui-big")
    assert shown == [f"/ui-big/n{i:04d}" for i in range(200)], "sorted, in order, no repeats"
    # Collapsing and expanding again starts over from the first page.
    toggle(browser, "/ui-big")
    assert item(browser, "/ui-big/n0000") is None


def test_a_deep_link_opens_the_node_and_the_tree_down_to_it(ui_server, browser):
    zk, url = ui_server
    open_ui(browser, url, "/ui-tree/b/c")
    wait(browser, lambda d: node_path(d) == "/ui-tree/b/c", "node view of the deep link")
    selected = item(browser, "/ui-tree/b/c").find_element(By.CSS_SELECTOR, ".name")
    assert "selected" in selected.get_attribute("class")
    assert browser.find_element(By.ID, "node-data").text == "hello"
    # A node past the first page of its parent is found too.
    open_ui(browser, url, "/ui-big/n0230")
    wait(browser, lambda d: item(d, "/ui-big/n0230") is not None, "a child on the third page")
    assert node_path(browser) == "/ui-big/n0230"


def test_the_node_view_shows_data_three_ways_the_stat_and_the_acl(ui_server, browser):
    zk, url = ui_server
    data, stat = zk.get("/ui-json")
    open_ui(browser, url, "/ui-json")
    wait(browser, lambda d: node_path(d) == "/ui-json", "node view")
    assert browser.find_element(By.ID, "data-size").text == f"{len(data)} B"
    browser.find_element(By.CSS_SELECTOR, 'button[data-view="json"]').click()
    assert browser.find_element(By.ID, "node-data").text == '{\n  "broker": 7,\n  "host": "h"\n}'
    browser.find_element(By.CSS_SELECTOR, 'button[data-view="hex"]').click()
    assert browser.find_element(By.ID, "node-data").text.startswith("00000000  7b 22 62 72")
    browser.find_element(By.CSS_SELECTOR, 'button[data-view="text"]').click()
    assert browser.find_element(By.ID, "node-data").text == data.decode()

    def field(name):
        return browser.find_element(By.CSS_SELECTOR, f'#stat tr[data-field="{name}"] td').text

    assert field("czxid") == hex(stat.czxid)
    assert field("mzxid") == hex(stat.mzxid)
    assert field("dataVersion") == str(stat.version)
    assert field("dataLength") == str(stat.data_length)
    assert field("ctime").endswith(f"({stat.ctime})")
    assert field("ephemeralOwner") == "0x0"
    rows = browser.find_elements(By.CSS_SELECTOR, "#acl tr td")
    assert [r.text for r in rows] == ["world", "anyone", "cdrwa"]


def test_an_ephemeral_node_names_its_owner(ui_server, browser):
    zk, url = ui_server
    zk.create("/ui-ephemeral", ephemeral=True)
    try:
        open_ui(browser, url, "/ui-ephemeral")
        wait(browser, lambda d: d.find_elements(By.ID, "ephemeral-owner"), "ephemeral owner")
        assert browser.find_element(By.ID, "ephemeral-owner").text.endswith(hex(zk.client_id[0]))
    finally:
        zk.delete("/ui-ephemeral")


def test_an_acl_protected_node_shows_noauth_for_its_data(ui_server, browser):
    _, url = ui_server
    open_ui(browser, url, "/ui-secret")
    wait(browser, lambda d: d.find_elements(By.ID, "data-error"), "data refused")
    assert browser.find_element(By.ID, "data-error").text == "NoAuth"
    # The Stat is still shown: exists needs no permission.
    assert browser.find_element(By.CSS_SELECTOR, '#stat tr[data-field="dataLength"] td').text == "6"


def test_search_by_path_prefix(ui_server, browser):
    _, url = ui_server
    open_ui(browser, url)
    box = browser.find_element(By.ID, "search-input")
    box.send_keys("/ui-big/n001\n")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results a.match"), "search results")
    found = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#search-results a.match")]
    assert found == [f"/ui-big/n{i:04d}" for i in range(10, 20)]
    browser.find_elements(By.CSS_SELECTOR, "#search-results a.match")[3].click()
    wait(browser, lambda d: node_path(d) == "/ui-big/n0013", "a result opens its node")


def test_an_edit_at_a_stale_version_shows_badversion_and_the_newer_data(ui_server, browser):
    zk, url = ui_server
    zk.create("/ui-edit", b"v0")
    try:
        open_ui(browser, url, "/ui-edit")
        wait(browser, lambda d: d.find_elements(By.ID, "edit-data"), "editor")
        editor = browser.find_element(By.ID, "edit-data")
        editor.clear()
        editor.send_keys("from the UI")
        zk.set("/ui-edit", b"from kazoo")  # someone else writes first
        browser.find_element(By.ID, "save-data").click()
        wait(browser, lambda d: "BadVersion" in d.find_element(By.ID, "edit-message").text, "BadVersion shown")
        assert browser.find_element(By.ID, "node-data").text == "from kazoo"
        assert zk.get("/ui-edit")[0] == b"from kazoo"
        # Saving again writes over the newer version, knowingly.
        browser.find_element(By.ID, "save-data").click()
        wait(browser, lambda d: d.find_element(By.ID, "edit-message").text == "saved", "saved")
        data, stat = zk.get("/ui-edit")
        assert (data, stat.version) == (b"from the UI", 2)
    finally:
        zk.delete("/ui-edit")


def create_child(driver, name, mode, data=""):
    driver.find_element(By.ID, "create-name").send_keys(name)
    driver.find_element(By.CSS_SELECTOR, f'#create-mode option[value="{mode}"]').click()
    if data:
        driver.find_element(By.ID, "create-data").send_keys(data)
    driver.find_element(By.ID, "create").click()


def test_create_and_delete_with_confirmation(ui_server, browser):
    zk, url = ui_server
    zk.create("/ui-make")
    try:
        open_ui(browser, url, "/ui-make")
        wait(browser, lambda d: d.find_elements(By.ID, "create"), "create form")
        create_child(browser, "plain", "persistent", "made here")
        wait(browser, lambda d: node_path(d) == "/ui-make/plain", "opens the new node")
        assert zk.get("/ui-make/plain")[0] == b"made here"
        wait(browser, lambda d: item(d, "/ui-make/plain") is not None, "listed in the tree")

        open_ui(browser, url, "/ui-make")
        wait(browser, lambda d: d.find_elements(By.ID, "create"), "create form")
        create_child(browser, "seq-", "persistent_sequential")
        wait(browser, lambda d: (node_path(d) or "").startswith("/ui-make/seq-0"), "a sequential node")
        assert zk.exists(node_path(browser)) is not None

        open_ui(browser, url, "/ui-make")
        wait(browser, lambda d: d.find_elements(By.ID, "create"), "create form")
        browser.find_element(By.CSS_SELECTOR, '#create-mode option[value="ephemeral"]').click()
        assert browser.find_element(By.ID, "ephemeral-warning").is_displayed(), "an ephemeral node is offered with a warning"
        browser.find_element(By.CSS_SELECTOR, '#create-mode option[value="container"]').click()
        assert not browser.find_element(By.ID, "ephemeral-warning").is_displayed()

        # Delete asks first; dismissing keeps the node.
        open_ui(browser, url, "/ui-make/plain")
        wait(browser, lambda d: d.find_elements(By.ID, "delete"), "delete button")
        browser.find_element(By.ID, "delete").click()
        browser.switch_to.alert.dismiss()
        assert zk.exists("/ui-make/plain") is not None
        browser.find_element(By.ID, "delete").click()
        browser.switch_to.alert.accept()
        wait(browser, lambda d: node_path(d) == "/ui-make", "back to the parent")
        assert zk.exists("/ui-make/plain") is None

        zk.create("/ui-make/tree/a/b", makepath=True)
        open_ui(browser, url, "/ui-make/tree")
        wait(browser, lambda d: d.find_elements(By.ID, "delete-recursive"), "recursive delete")
        browser.find_element(By.ID, "delete-recursive").click()
        browser.switch_to.alert.accept()
        wait(browser, lambda d: node_path(d) == "/ui-make", "back to the parent")
        assert zk.exists("/ui-make/tree") is None
    finally:
        zk.delete("/ui-make", recursive=True)


def test_addauth_from_the_ui_opens_an_acl_protected_node(ui_server, browser):
    _, url = ui_server
    open_ui(browser, url, "/ui-secret")
    wait(browser, lambda d: d.find_elements(By.ID, "data-error"), "data refused")
    assert browser.find_element(By.ID, "identity").text == "anonymous"
    browser.find_element(By.ID, "auth-input").send_keys("ui-user:pw\n")
    wait(browser, lambda d: d.find_element(By.ID, "identity").text == "digest:ui-user", "identity shown")
    wait(browser, lambda d: d.find_elements(By.ID, "node-data"), "data readable")
    assert browser.find_element(By.ID, "node-data").text == "hidden"


def test_set_acl(ui_server, browser):
    zk, url = ui_server
    zk.create("/ui-acl")
    try:
        open_ui(browser, url, "/ui-acl")
        wait(browser, lambda d: d.find_elements(By.ID, "edit-acl"), "ACL editor")
        editor = browser.find_element(By.ID, "edit-acl")
        editor.clear()
        editor.send_keys("world:anyone:rw")
        browser.find_element(By.ID, "save-acl").click()
        wait(browser, lambda d: [r.text for r in d.find_elements(By.CSS_SELECTOR, "#acl tr td")] == ["world", "anyone", "rw"], "new ACL shown")
        acl, stat = zk.get_acls("/ui-acl")
        assert [(a.id.scheme, a.id.id, a.perms) for a in acl] == [("world", "anyone", 3)]
        assert stat.aversion == 1
    finally:
        zk.delete("/ui-acl")


def post(url, call, body, headers):
    request = urllib.request.Request(
        url + f"api/{call}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_changes_need_the_csrf_token_and_this_origin(ui_server):
    zk, url = ui_server
    zk.create("/ui-csrf", b"untouched")
    try:
        with urllib.request.urlopen(url + "api/session", timeout=10) as response:
            cookie = response.headers["Set-Cookie"].split(";")[0]
            token = json.loads(response.read())["csrf"]
        change = {"path": "/ui-csrf", "data": "b3duZWQ=", "version": -1}
        assert post(url, "set", change, {"Cookie": cookie})[0] == 403
        assert post(url, "set", change, {"Cookie": cookie, "X-Zoocore-Csrf": "0" * 32})[0] == 403
        forged = {"Cookie": cookie, "X-Zoocore-Csrf": token, "Origin": "http://evil.example"}
        assert post(url, "set", change, forged)[0] == 403
        assert zk.get("/ui-csrf")[0] == b"untouched"
        status, answer = post(url, "set", change, {"Cookie": cookie, "X-Zoocore-Csrf": token})
        assert status == 200, answer
        assert zk.get("/ui-csrf")[0] == b"owned"
    finally:
        zk.delete("/ui-csrf")


def watching(driver, path):
    return path in (driver.find_element(By.TAG_NAME, "body").get_attribute("data-watching") or "").split("\n")


def test_the_open_node_and_expanded_children_update_live(ui_server, browser):
    zk, url = ui_server
    zk.create("/ui-live", b"one")
    zk.create("/ui-live/first/leaf", makepath=True)
    try:
        open_ui(browser, url, "/ui-live")
        toggle(browser, "/ui-live")
        wait(browser, lambda d: item(d, "/ui-live/first") is not None, "children of /ui-live")
        toggle(browser, "/ui-live/first")
        wait(browser, lambda d: watching(d, "/ui-live") and watching(d, "/ui-live/first"), "the page watches both")
        zk.set("/ui-live", b"two")
        wait(browser, lambda d: d.find_element(By.ID, "node-data").text == "two", "new data shown without a reload")
        zk.create("/ui-live/born")
        wait(browser, lambda d: item(d, "/ui-live/born") is not None, "a new child appears in the tree")
        assert item(browser, "/ui-live/first/leaf") is not None, "what was expanded below stays expanded"
        zk.delete("/ui-live/born")
        wait(browser, lambda d: item(d, "/ui-live/born") is None, "a deleted child goes")
    finally:
        zk.delete("/ui-live", recursive=True)


def test_the_server_page_draws_latency_and_shows_shards_and_mntr(ui_server, browser):
    _, url = ui_server
    open_ui(browser, url, "/")
    browser.find_element(By.ID, "nav-server").click()
    wait(browser, lambda d: d.find_elements(By.ID, "server-mode"), "server page")
    assert browser.find_element(By.ID, "server-mode").text == "standalone"
    shards = browser.find_elements(By.CSS_SELECTOR, "#shards tr")
    assert len(shards) == 1 + 2, "a row per shard (zoocore.shards=2)"
    bars = browser.find_elements(By.CSS_SELECTOR, "svg#latency rect")
    assert bars and sum(int(b.get_attribute("data-count")) for b in bars) > 0, "latency drawn"
    figures = [r.find_elements(By.TAG_NAME, "td") for r in browser.find_elements(By.CSS_SELECTOR, "#mntr tr")[1:]]
    assert any(f[0].text.endswith("znode_count") for f in figures), "mntr's figures"


def session_of(url):
    with urllib.request.urlopen(url + "api/session", timeout=10) as response:
        return response.headers["Set-Cookie"].split(";")[0], json.loads(response.read())


@pytest.mark.parametrize("setting", ["admin.ui.readOnly=true", "admin.ui.enabled=false"])
def test_the_ui_can_be_read_only_or_off(setting):
    admin = free_port()
    extra = f"admin.enableServer=true\nadmin.serverAddress=127.0.0.1\nadmin.serverPort={admin}\n{setting}\n"
    with running(Cluster("zoocore", extra=extra)):
        url = f"http://127.0.0.1:{admin}/ui/"
        if setting.startswith("admin.ui.enabled"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url, timeout=10)
            assert refused.value.code == 404
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/commands/ruok", timeout=10) as ok:
                assert ok.status == 200, "the admin server itself stays"
            return
        cookie, session = session_of(url)
        assert session["readOnly"] is True
        change = {"path": "/ro", "mode": "persistent"}
        status, answer = post(url, "create", change, {"Cookie": cookie, "X-Zoocore-Csrf": session["csrf"]})
        assert (status, answer["error"]) == (403, "this UI is read-only (admin.ui.readOnly)")
        assert get_json(url, "node?path=/zookeeper", cookie)[0] == 200, "reading still works"


def get_json(url, call, cookie):
    request = urllib.request.Request(url + f"api/{call}", headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_listing_is_paged_from_cache_until_the_node_or_its_acl_changes(ui_server):
    zk, url = ui_server
    zk.create("/ui-cache/a", makepath=True)
    try:
        cookie, _ = session_of(url)
        status, page = get_json(url, "children?path=/ui-cache", cookie)
        assert (status, [c["name"] for c in page["children"]]) == (200, ["a"])
        zk.create("/ui-cache/b")
        status, page = get_json(url, "children?path=/ui-cache", cookie)
        assert [c["name"] for c in page["children"]] == ["a", "b"], "a new child lists again"
        # Taking READ away shows at once, though the children are the same.
        zk.set_acls("/ui-cache", [make_digest_acl("someone", "else", all=True)])
        status, refused = get_json(url, "children?path=/ui-cache", cookie)
        assert (status, refused["error"]) == (403, "NoAuth")
    finally:
        zk.add_auth("digest", "someone:else")
        zk.delete("/ui-cache", recursive=True)


def test_a_write_after_the_ui_session_expired_opens_a_new_one():
    """The browser's ZooKeeper session expires while the page sits idle
    (tickTime=100: sessions of at most 2 s); the next change still works."""
    admin = free_port()
    extra = (
        f"tickTime=100\nadmin.enableServer=true\nadmin.serverAddress=127.0.0.1\nadmin.serverPort={admin}\n"
    )
    with running(Cluster("zoocore", extra=extra)) as c:
        url = f"http://127.0.0.1:{admin}/ui/"
        cookie, session = session_of(url)
        assert get_json(url, "children?path=/", cookie)[0] == 200
        port = int(c.hosts.split(":")[1])

        def sessions():
            text = four_letter_word(port, "mntr")
            return next((int(l.split()[1]) for l in text.splitlines() if l.startswith("zoocore_sessions")), None)

        deadline = time.monotonic() + 30
        while sessions() != 0:
            assert time.monotonic() < deadline, "the idle UI session never expired"
            time.sleep(0.1)
        change = {"path": "/after-expiry", "mode": "persistent"}
        status, answer = post(url, "create", change, {"Cookie": cookie, "X-Zoocore-Csrf": session["csrf"]})
        assert (status, answer.get("path")) == (200, "/after-expiry")


def http(url, path, source="127.0.0.1", method="GET", headers=None, body=None):
    """One request from `source` (another loopback address is another
    client); the status, the JSON answer and the Set-Cookie value."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http_client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        cookie = (response.getheader("Set-Cookie") or "").split(";")[0]
        return response.status, json.loads(response.read() or b"{}"), cookie
    finally:
        conn.close()


def test_ip_acls_hold_for_the_browser_not_for_the_server(ui_server):
    """The UI's sessions speak for the browser's address: a node only
    127.0.0.1 may read is refused to a browser at 127.0.0.2."""
    zk, url = ui_server
    zk.create("/ui-local", b"local only", acl=[make_acl("ip", "127.0.0.1", all=True)])
    try:
        for source, expected in (("127.0.0.2", "NoAuth"), ("127.0.0.1", None)):
            _, session, cookie = http(url, "/ui/api/session", source)
            status, node, _ = http(url, "/ui/api/node?path=/ui-local", source, headers={"Cookie": cookie})
            assert status == 200
            assert node.get("dataError") == expected, (source, node)
        # The proxy's auth scheme is useless without the process's secret.
        intruder = KazooClient(hosts=zk.connect_string, timeout=10.0)
        intruder.start(timeout=15)
        try:
            with pytest.raises(AuthFailedError):
                intruder.add_auth("zoocore-ui", "guess 127.0.0.1")
        finally:
            intruder.stop()
            intruder.close()
    finally:
        zk.delete("/ui-local")


def test_only_this_servers_host_names_and_known_sessions_are_answered(ui_server):
    _, url = ui_server
    # DNS rebinding: a page of another name resolved to this address.
    status, answer, _ = http(url, "/ui/api/session", headers={"Host": "evil.example:8080"})
    assert (status, answer["error"]) == (403, "this Host is not the server's (admin.ui.allowedHosts)")
    # Only the session call makes a browser.
    status, answer, cookie = http(url, "/ui/api/children?path=/")
    assert (status, answer["error"], cookie) == (403, "no UI session", "")
    # A cookie is good from the address it was given to only.
    _, _, cookie = http(url, "/ui/api/session", "127.0.0.1")
    assert http(url, "/ui/api/children?path=/", "127.0.0.3", headers={"Cookie": cookie})[0] == 403
    assert http(url, "/ui/api/children?path=/", "127.0.0.1", headers={"Cookie": cookie})[0] == 200
