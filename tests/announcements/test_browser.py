"""The announcements in real headless Chromium (Debian's): a writer creates one on the admin page
(the hub login carried to the service by OAuth, the form posted with its XSRF token); a reader sees
theirs on the hub's home and spawn pages; script and event-handler payloads run nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from html.parser import HTMLParser

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, expect

from browser import log_in

from .conftest import Announcements

pytestmark = [pytest.mark.hub, pytest.mark.browser]

PAYLOAD = '<script>window.__x=1</script>\n\n<img src=x onerror="window.__x=1">\n\nplain *text* stays'


@pytest.fixture
def login(browser: Browser, announcements: Announcements) -> Iterator[Callable[[str], Page]]:
    contexts = []

    def make(user: str) -> Page:
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        log_in(page, announcements.hub.url, user, announcements.hub.password)
        return page

    yield make
    for context in contexts:
        context.close()


def frame(page: Page) -> FrameLocator:
    return page.frame_locator("iframe#hpc-announcements")


def test_a_writer_creates_an_announcement_on_the_admin_page(
    announcements: Announcements, login: Callable[[str], Page], unique: Callable[[str], str]
) -> None:
    title = unique("Made on the admin page")
    page = login("wendy")
    page.goto(announcements.base)
    expect(page.get_by_role("heading", name="Announcements", exact=True)).to_be_visible()
    page.get_by_label("Title").fill(title)
    page.get_by_label("Body (Markdown)").fill("Physics **only**.")
    page.get_by_label("Severity").select_option("warning")
    page.get_by_label("Only these").check()
    page.get_by_label("Groups").fill("physics")
    page.get_by_role("button", name="Create").click()
    row = page.locator("table.list tr", has_text=title)
    expect(row).to_contain_text("warning")
    expect(row).to_contain_text("groups: physics")
    created = next(a for a in announcements.visible("alice") if a["title"] == title)
    assert (
        created["severity"] == "warning" and created["body_html"] == "<p>Physics <strong>only</strong>.</p>"
    )
    assert title not in announcements.titles("bob")

    # edit it, then delete it, on the page
    row.get_by_role("link", name="Edit").click()
    page.get_by_label("Title").fill(title + " (edited)")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("table.list tr", has_text=title + " (edited)")).to_have_count(1)
    assert title + " (edited)" in announcements.titles("carol")
    page.get_by_role("button", name=f"Delete: {title} (edited)").click()
    expect(page.locator("table.list tr", has_text=title)).to_have_count(0)
    assert title + " (edited)" not in announcements.titles("carol")


def test_a_form_post_without_the_xsrf_token_is_refused(
    announcements: Announcements, login: Callable[[str], Page]
) -> None:
    page = login("wendy")
    page.goto(announcements.base)  # the service's cookie is set now
    before = len(
        announcements.request("GET", "api/v1/announcements?all=1", announcements.writer()).json()[
            "announcements"
        ]
    )
    r = page.request.post(announcements.base, form={"title": "forged", "audience_kind": "everyone"})
    assert r.status == 403
    after = announcements.request("GET", "api/v1/announcements?all=1", announcements.writer()).json()[
        "announcements"
    ]
    assert len(after) == before and "forged" not in {a["title"] for a in after}


def test_an_admin_without_the_scope_gets_403_on_the_admin_page(
    announcements: Announcements, login: Callable[[str], Page]
) -> None:
    page = login("boss")
    response = page.goto(announcements.base)
    assert response is not None and response.status == 403
    expect(page.locator("body")).to_contain_text("custom:announcements:write")


def test_payloads_run_nothing_on_the_hub_home_page(
    announcements: Announcements, login: Callable[[str], Page], unique: Callable[[str], str]
) -> None:
    title = unique("Payload")
    created = announcements.create(
        title=title, body=PAYLOAD, audience={"groups": ["physics"]}, severity="error"
    )
    served = next(a for a in announcements.visible("alice") if a["id"] == created["id"])
    tags = _tags(served["body_html"])
    assert "script" not in tags and "img" not in tags, served["body_html"]
    assert "onerror" not in served["body_html"] and "<script" not in served["body_html"]
    assert "<em>text</em>" in served["body_html"]

    page = login("alice")
    page.goto(f"{announcements.hub.url}/hub/home")
    embedded = frame(page)
    expect(embedded.locator("article", has_text=title)).to_be_visible()
    expect(embedded.locator("article", has_text=title).locator("em")).to_have_text("text")
    expect(page.locator("iframe#hpc-announcements")).to_be_visible()
    # give an image error handler every chance to run, then look at both windows
    page.wait_for_timeout(1000)
    assert page.evaluate("typeof window.__x") == "undefined"
    frames = [f for f in page.frames if "/embed" in f.url]
    assert frames and all(f.evaluate("typeof window.__x") == "undefined" for f in frames)
    assert frames[0].locator("script:not([src])").count() == 0 and frames[0].locator("img").count() == 0


def test_dismissing_on_the_hub_page_and_nothing_for_others(
    announcements: Announcements, login: Callable[[str], Page], unique: Callable[[str], str]
) -> None:
    title = unique("Physics only, dismissible")
    announcements.create(title=title, audience={"groups": ["physics"]})
    carol = login("carol")
    carol.goto(f"{announcements.hub.url}/hub/home")
    article = frame(carol).locator("article", has_text=title)
    expect(article).to_be_visible()
    frame(carol).get_by_role("button", name=f"Dismiss: {title}").click()
    expect(article).to_have_count(0)
    assert title not in announcements.titles("carol") and title in announcements.titles("alice")
    # bob is not in physics: his hub page shows none of it (the frame stays hidden or empty)
    bob = login("bob")
    bob.goto(f"{announcements.hub.url}/hub/home")
    expect(frame(bob).locator("section.hpc-announcements")).to_be_attached()
    expect(frame(bob).locator("article", has_text=title)).to_have_count(0)


def test_the_spawn_page_shows_them_too(
    announcements: Announcements, login: Callable[[str], Page], unique: Callable[[str], str]
) -> None:
    title = unique("Before you start")
    announcements.create(title=title, audience={"users": ["alice"]}, required=True)
    page = login("alice")
    page.goto(f"{announcements.hub.url}/hub/spawn")
    expect(page.get_by_role("radio", name="Large")).to_be_visible()  # the form, not a start
    article = frame(page).locator("article", has_text=title)
    expect(article).to_be_visible()
    # required: no dismiss button
    expect(frame(page).get_by_role("button", name=f"Dismiss: {title}")).to_have_count(0)


def _tags(html: str) -> set[str]:
    class Tags(HTMLParser):
        found: set[str] = set()

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.found.add(tag)

    parser = Tags()
    parser.found = set()
    parser.feed(html)
    return parser.found
