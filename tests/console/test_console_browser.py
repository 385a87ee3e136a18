"""The console driven in headless Chromium (selenium, the system chromedriver): what a user does on the pages.

Each test serves a fresh virtual-time engine (callbacks keep real time, as ``serve --skip-time``); the page
polls the server about once a second, so every wait here is for the page to show a state the engine reached,
bounded by WAIT seconds. Set DURABLE_CONSOLE_SCREENSHOT=PATH to keep a screenshot of the execution page (the
README's picture comes from it).
"""
from __future__ import annotations

import json
import os

import pytest

from .test_console_http import MARKUP

WAIT = 15.0  # seconds; the page shows a change within about one poll (1 s)


@pytest.fixture
def page(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    class Page:
        driver = browser

        def open(self, url: str) -> None:
            browser.get(url)

        def find(self, css: str):
            return browser.find_element(By.CSS_SELECTOR, css)

        def all(self, css: str):
            return browser.find_elements(By.CSS_SELECTOR, css)

        def until(self, condition, what: str):
            return WebDriverWait(browser, WAIT, poll_frequency=0.1).until(lambda _: condition(), message=what)

        def status(self) -> str:
            return self.find("#status").get_attribute("data-status") or ""

        def screenshot(self, path: str) -> None:
            """The whole page (the window made as tall as the page, then put back)."""
            height = browser.execute_script("return document.documentElement.scrollHeight")
            size = browser.get_window_size()
            browser.set_window_size(size["width"], min(height + 140, 3000))
            try:
                browser.save_screenshot(path)
            finally:
                browser.set_window_size(size["width"], size["height"])

        def errors(self) -> list:
            return [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]

    browser.get_log("browser")  # drop what earlier tests logged
    return Page()


def test_a_callback_is_answered_from_the_page_and_the_execution_succeeds_without_a_reload(served, page):
    arn = served.start("approval", {"order": "o-1"}, name="order-o-1")
    page.open(served.page_url())
    row = page.until(lambda: page.all(f'tr[data-arn="{arn}"]'), "the execution is listed")[0]
    assert row.get_attribute("data-status") == "RUNNING" and "RUNNING" in row.text
    row.find_element("css selector", "a").click()

    page.until(lambda: page.status() == "RUNNING" and page.all(".callback .cb-payload"), "the callback form shows")
    assert [row.get_attribute("data-op-name") for row in page.all(".op-row")] == [
        "prepare", "reserve", "cool-down", "quote", "price", "tax", "approval"]
    if os.environ.get("DURABLE_CONSOLE_SCREENSHOT"):  # the README's picture
        page.find('.op-row[data-op-name="reserve"]').click()
        page.screenshot(os.environ["DURABLE_CONSOLE_SCREENSHOT"])
    page.driver.execute_script("window.__sameDocument = true")  # gone if the page reloads
    payload = page.find(".callback .cb-payload")
    payload.send_keys('{"approved": tru')  # not JSON: checked before anything is sent
    page.find(".callback .cb-succeed").click()
    assert "not JSON" in page.find("#notice").text and "nothing was sent" in page.find("#notice").text
    assert served.engine.get_execution(arn).status == "RUNNING"

    payload.send_keys("e}")
    assert page.find(".callback .check").text == "valid JSON"
    page.find(".callback .cb-succeed").click()
    page.until(lambda: page.status() == "SUCCEEDED", "the page shows SUCCEEDED")
    assert page.driver.execute_script("return window.__sameDocument") is True
    assert '"approved": true' in page.find("#outcome").text
    assert page.find("#callbacks").get_attribute("hidden") is not None  # nothing waits any more
    assert served.engine.get_execution(arn).result["answer"] == {"approved": True}
    assert "success sent" in page.find("#notice").text
    assert not page.errors()


def test_a_long_running_execution_is_stopped_from_the_page(served, page):
    arn = served.start_only("sleeper", name="sleeps-a-day")
    page.open(served.page_url(arn))
    page.until(lambda: page.status() == "RUNNING" and page.all('.op-row[data-op-name="a-day"]'), "the wait shows")
    page.find('.op-row[data-op-name="a-day"]').click()  # its details: the timer behind it
    assert "Timers" in page.find('.opdetails').text and "wait" in page.find(".opdetails table").text
    event = page.find(".opdetails details.event")  # the history event behind the wait, fetched when opened
    event.find_element("css selector", "summary").click()
    page.until(lambda: '"WaitStartedDetails"' in event.text, "the event's JSON shows")
    assert '"Duration": 86400' in event.text
    stop = page.find('#actions button[data-action="stop"]')
    assert stop.is_enabled()
    stop.click()
    page.until(lambda: page.status() == "STOPPED", "the page shows STOPPED")
    assert served.engine.get_execution(arn).status == "STOPPED"
    assert page.find('#actions button[data-action="delete"]').is_enabled()
    assert not page.find('#actions button[data-action="stop"]').is_enabled()


def test_payloads_with_markup_are_shown_as_text(served, page):
    arn = served.start("echo", {"note": MARKUP}, name="<b>markup</b>")
    long_input = {"note": MARKUP, "pad": "x" * 3000}
    long_arn = served.start("echo", long_input, name="long")
    page.open(served.page_url())
    name = page.until(lambda: page.all(f'tr[data-arn="{arn}"] a'), "the execution is listed")[0]
    assert name.text == "<b>markup</b>"
    name.click()
    page.until(lambda: page.status() == "SUCCEEDED", "the execution page shows")
    for shown in ("#input", "#outcome"):  # the payload's JSON text, markup and all, as characters
        assert json.loads(page.find(shown).text) == {"note": MARKUP}
    page.find(".op-row").click()
    assert json.loads(page.find(".opdetails pre.payload").text) == {"note": MARKUP}
    assert page.driver.execute_script("return window.__pwned") is None
    assert page.all("#input script, #outcome script, #input img, #outcome img, .opdetails script") == []

    page.open(served.page_url(long_arn))  # a long payload: clipped, and whole on request
    page.until(lambda: page.status() == "SUCCEEDED", "the long execution's page shows")
    clipped = page.find("#input pre.payload").text
    assert len(clipped) < len(json.dumps(long_input)) and clipped.startswith('{"note": "<script>')
    page.find("#input .show-all").click()
    page.until(lambda: not page.all("#input .show-all"), "the whole input shows")
    assert json.loads(page.find("#input pre.payload").text) == long_input
    assert page.driver.execute_script("return window.__pwned") is None


def test_the_execution_page_shows_failed_attempts_with_their_stack_traces(served, page):
    arn = served.start("flaky", {"card": "4242"}, name="flaky")
    page.open(served.page_url(arn))
    page.until(lambda: page.status() == "FAILED", "the page shows FAILED")
    failures = page.all("#failure-list .failure")
    assert len(failures) == 3 and "charge attempt 1: ValueError: card declined <b>twice</b>" in failures[0].text
    failures[0].find_element("css selector", "details.trace > summary").click()
    assert "_explode" in failures[0].text and 'raise ValueError("card declined <b>twice</b>")' in failures[0].text
    assert len(page.all(".op-row .bar.failed")) == 3  # the timeline's own bars: three failed attempts
