"""The console in a real headless Chromium (Debian chromium + chromium-driver, driven by selenium): sign in,
watch an instance from DCMTK storescu arrive in quarantine, open it, release it after the configuration is
fixed, see it delivered to Orthanc. Screenshots go to reports/console/ (test artefacts, not committed)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import dicom_factory as f
import pytest
from console.support import PASSWORD, ROUTE_NONE, add_user, console_config, masked_held, phi_of
from peers import Orthanc, storescu, wait_for

pytestmark = pytest.mark.peers
SHOTS = Path(__file__).resolve().parents[2] / "reports" / "console"


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    missing = [p for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not shutil.which(p)]
    if missing:
        msg = f"missing {missing}: run scripts/setup (installs chromium, chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(2)
    yield driver
    driver.quit()


def test_sign_in_quarantine_release_delivered(browser, small_face, start_console, tmp_path, monkeypatch, capsys) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    SHOTS.mkdir(parents=True, exist_ok=True)
    sent = [f.save(f.op8("browser patient", small_face, 1), tmp_path / "in.dcm")]
    phi = phi_of(sent)
    pages: list[str] = []

    def shot(name: str) -> None:
        pages.append(browser.page_source)
        browser.save_screenshot(str(SHOTS / f"{name}.png"))

    orthanc = Orthanc(tmp_path / "orthanc").start()
    try:
        config, port, cport = console_config(tmp_path / "node", orthanc.dicom_port, routes=ROUTE_NONE)
        add_user(config, "otto", "operator", monkeypatch, capsys)
        add_user(config, "pia", "privacy", monkeypatch, capsys)
        console = start_console(config, port, cport)
        browser.get(console.url)
        assert browser.find_element(By.ID, "signin")
        browser.find_element(By.ID, "name").send_keys("otto")  # first a wrong password
        browser.find_element(By.ID, "password").send_keys("wrong password")
        browser.find_element(By.ID, "signin").click()
        # the form posts and the answer loads as a new page: wait for it, not for the click to return
        WebDriverWait(browser, 15).until(lambda b: "Wrong user name or password" in b.page_source)
        shot("1-login-refused")
        sign_in(browser, By, "otto")
        assert "otto (operator)" in browser.page_source

        assert storescu(port, sent).returncode == 0
        # the dashboard refreshes itself every 5 s (a meta refresh: no JavaScript)
        wait_for(lambda: browser.find_element(By.ID, "count-quarantined").text == "1", 90, "the instance on the dashboard")
        shot("2-dashboard")
        browser.find_element(By.LINK_TEXT, "Quarantine").click()
        browser.find_element(By.CSS_SELECTOR, "#instances tbody a").click()
        assert browser.find_element(By.ID, "reason").text == "no routing rule matched"
        shot("3-quarantined-instance")
        instance_url = browser.current_url
        assert not browser.find_elements(By.PARTIAL_LINK_TEXT, "Show the original")  # not for an operator

        sign_in(browser, By, "pia")  # the privacy role: the original, while it is retained, audited
        browser.get(instance_url)
        browser.find_element(By.PARTIAL_LINK_TEXT, "Show the original").click()
        img = browser.find_element(By.CSS_SELECTOR, "figure img")
        wait_for(lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 128,
                 10, "the original preview to load")
        browser.save_screenshot(str(SHOTS / "3b-original-privacy.png"))  # identifiable by design: not grepped
        sign_in(browser, By, "otto")

        console.stop()  # the administrator fixes the routing rule and restarts the node; the session survives
        config.write_text(config.read_text().replace(ROUTE_NONE, '[[routes]]\nname = "all"\n'))
        console = start_console(config, port, cport)
        browser.get(instance_url)
        browser.find_element(By.ID, "release").click()  # a form post: wait for its answer page, as at sign-in
        WebDriverWait(browser, 15).until(lambda b: "released: it goes through the pipeline again" in b.page_source)
        wait_for(lambda: len(orthanc.instances()) == 1, 60, "the released instance in Orthanc")

        def delivered() -> bool:
            browser.get(instance_url)
            return browser.find_element(By.ID, "state").text == "done"

        wait_for(delivered, 60, "the instance page to say done")
        history = browser.find_element(By.ID, "history").text
        assert "released" in history and "forwarded ORTHANC" in history and "console: release otto" in history
        shot("4-delivered")
        pseudonym = browser.find_element(By.XPATH, "//th[text()='Pseudonymous patient']/following-sibling::td").text
        browser.find_element(By.LINK_TEXT, "Audit").click()
        audit = browser.find_element(By.ID, "audit").text
        assert "otto 127.0.0.1 release" in audit and "pia 127.0.0.1 view original" in audit
        shot("5-audit")
        sign_in(browser, By, "pia")
        browser.get(f"{console.url}/lookup?pseudonym={pseudonym}")
        assert f.read(sent[0]).PatientID in browser.find_element(By.ID, "found").text  # the privacy role's explicit look-up
        browser.save_screenshot(str(SHOTS / "6-lookup-privacy.png"))
        for text in pages:
            for value in phi:
                assert value not in text, f"{value!r} shown in the console"
    finally:
        orthanc.stop()


def test_drawn_geometry_over_the_mask(browser, astronaut, start_console, tmp_path, monkeypatch, capsys) -> None:
    """A viewer turns the overlay on with a plain link: the lids, limbus, canthi and reflex the mask drew, in
    SVG over the masked image (whole, then enlarged to the eyes)."""
    import io

    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.by import By

    SHOTS.mkdir(parents=True, exist_ok=True)
    console, sent = masked_held(astronaut, start_console, tmp_path, monkeypatch, capsys)
    browser.get(console.url)
    sign_in(browser, By, "vera")

    def masked() -> bool:
        browser.get(f"{console.url}/queues")
        return bool(browser.find_elements(By.CSS_SELECTOR, "#instances tbody .badge.queued"))

    wait_for(masked, 180, "the instance masked and queued")
    browser.find_element(By.CSS_SELECTOR, "#instances tbody a").click()
    assert not browser.find_elements(By.TAG_NAME, "svg")
    browser.find_element(By.ID, "overlay-on").click()
    for name, link in (("7-overlay", "overlay-eyes"), ("8-overlay-eyes", None)):
        wait_for(lambda: browser.execute_script("return document.readyState") == "complete", 10, "the page loaded")
        svg = browser.find_element(By.ID, "overlay")
        assert len(svg.find_elements(By.CSS_SELECTOR, "polyline.lid")) == 4
        browser.save_screenshot(str(SHOTS / f"{name}.png"))
        shown = np.asarray(Image.open(io.BytesIO(svg.screenshot_as_png)).convert("RGB")).astype(int)
        lid = (np.abs(shown - (0, 229, 255)).max(axis=2) < 40).sum()
        skin = (shown.sum(axis=2) > 200).mean()
        assert lid > 20 and skin > 0.2, (name, lid, skin)  # the lid lines drawn over the loaded (not black) mask
        if link:
            browser.find_element(By.ID, link).click()
    assert all(v not in browser.page_source for v in phi_of(sent))


def sign_in(browser, By, name: str) -> None:  # type: ignore[no-untyped-def]
    """Sign out whoever is signed in, then sign in as ``name`` through the login form."""
    if browser.find_elements(By.CSS_SELECTOR, "form.who button"):
        browser.find_element(By.CSS_SELECTOR, "form.who button").click()
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "signin").click()
    assert f"{name} (" in browser.find_element(By.CSS_SELECTOR, "form.who span").text
