"""Issue 17: the staff web view end to end in a real browser: Debian's headless Chromium driven by
selenium through chromedriver (nothing downloaded at test time), against `tracker serve --web-port 0`
started as a subprocess on a free loopback port. A nurse signs in, sees the demo's overdue items,
acknowledges an alert (found in the audit trail under her name), opens a patient with their charts, and
the Quality page with its charts; filters Today by clinician, sees a patient's EASI chart and opens a
protocol's rule set."""

from __future__ import annotations

import os
import re

import pytest

from tests.test_web import utc_today
from tests.web_clinic import PASSWORD, copy_of, demo_clinic, query, tracker_serve  # noqa: F401 (demo_clinic: a fixture, found by name)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")


@pytest.fixture
def served(request, tmp_path):
    """`tracker serve` on free loopback ports over a copy of the demo clinic: (web base URL, database)."""
    db = copy_of(request.getfixturevalue("demo_clinic"), tmp_path)
    with tracker_serve(db, tmp_path) as (_feeds, web):
        yield web, db


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(10)  # find_element waits for an element to appear (no sleeps)
    try:
        yield driver
    finally:
        driver.quit()


def go(browser, element) -> None:
    """Click `element` and wait until the browser has left the page it was on (the old page's root element
    goes stale): reading right after a click may otherwise find the old page's <h1>. An event, not a sleep."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    element.click()

    def left(_browser) -> bool:
        # expected_conditions.staleness_of, also reading chromedriver's "Node with given id does not belong
        # to the document" (an unknown error it raises when asked mid-navigation) as the old page gone.
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    WebDriverWait(browser, 30).until(left)


def test_a_nurse_signs_in_acknowledges_an_alert_and_opens_a_patient(served, browser):
    from selenium.webdriver.common.by import By

    base, db = served
    browser.get(base + "/today")
    assert browser.current_url == base + "/login"
    browser.find_element(By.ID, "name").send_keys("nina")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    go(browser, browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]"))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Today")
    assert browser.current_url == base + "/today"
    overdue = browser.find_elements(By.CSS_SELECTOR, "li.item.overdue")
    assert overdue and "Overdue (" in browser.find_element(By.ID, "h-overdue").text
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies["tracker_session"]["httpOnly"] and cookies["tracker_session"]["sameSite"] == "Strict"

    go(browser, browser.find_element(By.LINK_TEXT, "Alerts"))
    article = browser.find_element(By.CSS_SELECTOR, "article.alert")
    alert_id = int(article.get_attribute("id").split("-")[1])
    article.find_element(By.NAME, "note").send_keys("bloods booked for Monday")
    go(browser, article.find_element(By.XPATH, ".//button[text()='Acknowledge']"))
    assert f"Alert acknowledged {alert_id}." in browser.find_element(By.CSS_SELECTOR, "p.done").text
    audit = query(db, "SELECT \"user\", action FROM audit_event WHERE entity = 'alert' AND entity_id = :i "
                      "ORDER BY id DESC", i=alert_id)
    assert audit[0] == ("nina", "alert.ack")
    assert query(db, "SELECT status FROM alert WHERE id = :i", i=alert_id)[0][0] == "acknowledged"

    go(browser, browser.find_element(By.LINK_TEXT, "Today"))
    link = browser.find_element(By.CSS_SELECTOR, "li.item.overdue a")
    mrn = link.text.split()[0]
    go(browser, link)
    assert re.fullmatch(re.escape(base) + r"/patients/\d+", browser.current_url)  # an id, not the MRN
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(mrn)
    assert browser.find_element(By.ID, "h-calendar").is_displayed()
    if query(db, "SELECT count(*) FROM lab_result r JOIN patient p ON p.id = r.patient_id "
                 "WHERE p.mrn = :m AND r.value_num IS NOT NULL", m=mrn)[0][0]:
        assert browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")

    go(browser, browser.find_element(By.LINK_TEXT, "Quality"))
    assert browser.current_url == base + "/quality"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Quality"
    chart = browser.find_element(By.CSS_SELECTOR, "figure#chart-on-time svg")
    assert chart.is_displayed() and "whole clinic" in chart.text
    assert browser.find_element(By.CSS_SELECTOR, "figure#chart-forecast svg").is_displayed()


def test_filter_today_by_clinician_see_the_easi_chart_and_open_a_protocol(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base, db = served
    browser.get(base + "/login")
    browser.find_element(By.ID, "name").send_keys("nina")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    go(browser, browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]"))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Today")

    clinician = query(db, "SELECT clinician FROM patient p JOIN item i ON i.patient_id = p.id "
                          "WHERE i.status = 'planned' AND i.due < :d GROUP BY clinician ORDER BY count(*) DESC "
                          "LIMIT 1", d=utc_today())[0][0]
    Select(browser.find_element(By.ID, "clinician")).select_by_visible_text(clinician)
    go(browser, browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]"))
    assert browser.find_element(By.TAG_NAME, "h1").text.endswith(clinician)
    assert "MRN" not in browser.current_url and "DEMO" not in browser.current_url  # filters only
    theirs = {r[0] for r in query(db, "SELECT mrn FROM patient WHERE clinician = :c", c=clinician)}
    links = browser.find_elements(By.CSS_SELECTOR, "li.item.overdue a")
    assert links and {link.text.split()[0] for link in links} <= theirs

    mrn = links[0].text.split()[0]
    go(browser, links[0])
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(mrn)
    assert query(db, "SELECT count(*) FROM assessment a JOIN patient p ON p.id = a.patient_id "
                     "WHERE p.mrn = :m AND a.easi IS NOT NULL", m=mrn)[0][0]  # the demo assesses everyone
    chart = browser.find_element(By.CSS_SELECTOR, "figure.response svg[aria-labelledby='r-easi-title r-easi-desc']")
    assert chart.is_displayed()
    assert "EASI" in browser.find_element(By.ID, "r-easi-title").get_attribute("textContent")

    go(browser, browser.find_element(By.LINK_TEXT, "Protocols"))
    go(browser, browser.find_element(By.CSS_SELECTOR, "a[href='/protocols/methotrexate']"))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Methotrexate")
    assert browser.find_element(By.ID, "h-rules").is_displayed()
    assert "clinic default" in browser.find_element(By.TAG_NAME, "main").text
