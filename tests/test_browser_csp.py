"""The Content-Security-Policy holds in a real browser: headless Chromium walks every page of the admin
an admin can reach (following the pages' own links), and no page reports a CSP violation or a script
error; confirmations (data-confirm, handled by static/app.js) still ask and can be refused."""

from __future__ import annotations

import os
from urllib.parse import urljoin, urlsplit

import pytest
from test_web_support import install_webtest, make_user, plan_and_send

import plugins.keydata.models  # noqa: F401  (its tables in the test schema: the crawl opens 配置管理)
import plugins.twopath.models  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
MAX_PAGES = 120
# Links that download a file or end the session: not pages to look at.
SKIP = ("/export", ".xlsx", "/logout", "/static/")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"chromium not installed ({CHROMIUM})"),
]

# Runs before any page script (Playwright injects it outside the page's CSP): keeps every violation.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + (e.sourceFile || '') + ':' + e.lineNumber);
});
"""


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def _log_in(page, base: str, username: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "Passw0rd-123")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('数据看板')")


def test_no_page_of_the_admin_violates_the_csp(app, registry_with, serve, browser):
    install_webtest(registry_with, serve)
    plan_and_send(3)
    make_user("ada", "admin")
    base = serve(app)
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" or "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    _log_in(page, base, "ada")

    origin = urlsplit(base).netloc
    queue, seen, paths = ["/"], set(), set()
    while queue and len(seen) < MAX_PAGES:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        paths.add(urlsplit(path).path)
        answer = page.goto(base + path)
        assert answer is not None and answer.status < 500, path
        page.wait_for_load_state("networkidle")
        violations = page.evaluate("window.__cspViolations || []")
        problems.extend(f"{path}: {v}" for v in violations)
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"):
            url = urlsplit(urljoin(base + path, href))
            if url.netloc != origin or any(s in url.path for s in SKIP):
                continue
            if url.path in paths or any(urlsplit(q).path == url.path for q in queue):
                continue  # one visit per page (its filter and sort variants are the same template)
            queue.append(url.path + (f"?{url.query}" if url.query else ""))
    assert len(seen) >= 15, sorted(seen)  # the crawl reached the admin's pages
    for must in ("/", "/uploads/", "/stats/", "/users/", "/config/regulators/", "/twopath/"):
        assert must in paths, must
    assert not problems, "\n".join(problems)

    # The detector itself works: markup with an inline style is refused and reported.
    page.evaluate("""document.body.insertAdjacentHTML('beforeend', '<div style="color:red">x</div>')""")
    page.wait_for_timeout(200)
    assert any("style-src" in v for v in page.evaluate("window.__cspViolations"))


def test_data_confirm_asks_and_a_refusal_sends_nothing(app, serve, browser):
    make_user("ada", "admin")
    make_user("vic", "viewer")
    base = serve(app)
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    _log_in(page, base, "ada")
    page.goto(base + "/users/")
    asked: list[str] = []

    def refuse(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", refuse)
    page.locator("tr", has_text="vic").get_by_role("button", name="重置密码").click()
    page.wait_for_timeout(300)
    assert asked == ["为 vic 生成新密码？其现有登录将失效。"]
    assert page.url.endswith("/users/")  # nothing was submitted

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr", has_text="vic").get_by_role("button", name="重置密码").click()
    page.wait_for_load_state("networkidle")
    assert "reset-password" in page.url
