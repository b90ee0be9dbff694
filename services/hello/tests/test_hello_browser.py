"""A person's path through the form, in headless Chromium driven by Selenium."""
import shutil
import tempfile

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    """Debian's chromium + chromium-driver, headless; no driver download."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            pytest.fail(f"{path} is missing: run `make setup` (Debian packages "
                        "chromium and chromium-driver)")
    profile = tempfile.mkdtemp(prefix="hello-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_submit_query_shows_answer(browser, hello_server):
    browser.get(hello_server + "/")
    assert browser.title == "hello"
    field = browser.find_element(By.ID, "query")
    field.send_keys("<i>ships</i> & boats")
    browser.find_element(By.CSS_SELECTOR, "#query-form button[type=submit]").click()
    answer = WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.ID, "answer")))
    assert answer.text == "post returned: <i>ships</i> & boats"
    assert browser.find_elements(By.TAG_NAME, "i") == []
