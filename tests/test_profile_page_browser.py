"""The profile page in a real browser: headless Chromium (Debian's package) on the page that
`lpt profile-page` serves for a registered tiny champion (test_profile_page.build_page_home).

Screenshots go to pytest's temporary folder (profile_page_screenshots*/ under its basetemp).
Skipped where no Chromium is installed (`apt-get install chromium`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from browser import CHROMIUM, BrowserTab
from test_profile_page import USERS, WRITTEN_PROFILE, build_page_home
from test_ui import background_server

from lpt_core.serving import free_port

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
CTRL = 2
# Short enough for the tiny encoder's 64 tokens: the model ranks it.
MARKUP = "<b>x</b><img src=x onerror=pwned=1><script>pwned=2</script>"
PWNED = "typeof pwned !== 'undefined'"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("profile_page_screenshots")


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    """`lpt profile-page` on the tiny champion, as `make ui` starts it."""
    root = tmp_path_factory.mktemp("profile_page_browser")
    home = build_page_home(root)
    port = free_port()
    command = [sys.executable, "-m", "lpt_core.cli", "profile-page", "--port", str(port), "--tracking-uri", home.tracking_uri]
    env = {**os.environ, "LPT_HOME": str(home.lpt_home)}
    url = f"http://127.0.0.1:{port}"
    with background_server(command, env, f"{url}/api/status", root / "page.log"):
        yield url


@pytest.fixture(scope="module")
def tab(page_url, tmp_path_factory):
    tab = BrowserTab(tmp_path_factory.mktemp("chromium"))
    yield tab
    tab.close()


@pytest.fixture
def page(tab, page_url):
    """The page freshly loaded, its model ready."""
    tab.goto(page_url)
    tab.wait_for("document.body.classList.contains('ready')")
    return tab


def answered(page: BrowserTab, action: Callable[[], object]) -> list[str]:
    """Do `action`, wait until the page has the answer to the ranking it asked for, and return
    the titles of the list."""
    before = page.run("Number(document.body.dataset.answered ?? 0)")
    action()
    page.wait_for(f"Number(document.body.dataset.answered ?? 0) > {before}")
    return page.run("[...document.querySelectorAll('#results tbody tr td:nth-child(2)')].map(c => c.firstChild.textContent)")


def show_user(page: BrowserTab, user_id: str) -> list[str]:
    """Pick a user with the keyboard: type the id in the labelled field, press Enter."""
    page.run("document.getElementById('user-id').focus()")
    page.type(user_id)
    return answered(page, lambda: page.press("Enter"))


def edit_and_rerank(page: BrowserTab, text: str) -> list[str]:
    """Type `text` at the end of the profile and press Ctrl+Enter."""
    page.run("const e = document.getElementById('editor'); e.focus(); e.setSelectionRange(e.value.length, e.value.length)")
    page.type(text)
    return answered(page, lambda: page.press("Enter", modifiers=CTRL))


def click(page: BrowserTab, selector: str) -> list[str]:
    return answered(page, lambda: page.run(f"document.querySelector({json.dumps(selector)}).click()"))


def horror_count(page: BrowserTab) -> int:
    return page.run(
        "[...document.querySelectorAll('#results tbody tr td:nth-child(3)')].filter(c => c.textContent.includes('Horror')).length"
    )


def message(page: BrowserTab) -> str:
    return page.wait_for("!document.getElementById('message').hidden && document.getElementById('message').textContent")


def test_pick_a_user_and_see_history_profiles_and_the_list(page, screenshots):
    titles = show_user(page, "u1")
    history = page.run("[...document.querySelectorAll('#history tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
    assert [h[0] for h in history] == ["1", "2", "3", "4"] and history[0][2] == "Comedy, Horror" and history[2][3] == "2"
    assert page.run("document.querySelector('#zero-shot .profile-text').textContent") == USERS["u1"][4]
    assert page.run("document.querySelector('#trained .profile-text').textContent") == USERS["u1"][5]
    assert page.run("document.getElementById('editor').value") == USERS["u1"][5]  # the trained one is ranked
    assert len(titles) == 20
    assert page.run("document.querySelectorAll('#results tr.target').length") == 1
    assert "romance story 10" in page.run("document.querySelector('#results tr.target').textContent")
    # Every control is labelled: a <label for> or its own text.
    unlabelled = page.run(
        "[...document.querySelectorAll('input, select, textarea, button')].filter(c => "
        "!(c.labels && c.labels.length) && !c.textContent.trim()).map(c => c.id)"
    )
    assert unlabelled == []
    page.screenshot(screenshots / "profile_page_user.png")


def test_loving_horror_brings_more_horror_a_dislike_fewer_and_reset_the_original_list(page, screenshots):
    original = show_user(page, "u1")
    original_horror = horror_count(page)
    edit_and_rerank(page, " Loves horror movies.")
    loves_horror = horror_count(page)
    assert loves_horror > original_horror
    assert page.run("document.querySelectorAll('#results td.moved-in').length") > 0
    assert not page.run("document.getElementById('moved-out-block').hidden")
    page.screenshot(screenshots / "profile_page_loves_horror.png")

    page.run("document.getElementById('genre').value = 'Horror'")
    click(page, "[data-edit='add_dislike']")
    assert page.run("document.getElementById('editor').value").endswith("Loves horror movies. They dislike Horror movies.")
    assert horror_count(page) < loves_horror
    page.screenshot(screenshots / "profile_page_dislikes_horror.png")

    click(page, "#undo")
    assert page.run("document.getElementById('editor').value").endswith("Loves horror movies.")
    assert horror_count(page) == loves_horror
    assert click(page, "#reset") == original
    assert page.run("document.getElementById('editor').value") == USERS["u1"][5]


def test_cold_start_ranks_from_the_text_alone(page, screenshots):
    page.run("document.getElementById('cold-start').click()")
    assert page.run("document.activeElement.id") == "editor"
    assert page.run("document.getElementById('history-section').hidden")
    page.type("Loves western movies.")
    titles = answered(page, lambda: page.press("Enter", modifiers=CTRL))
    assert len(titles) == 20 and "western" in titles[0]
    request = json.loads(page.run("document.getElementById('export-json').textContent"))
    assert request["dataframe_records"][0]["history_item_ids"] is None
    page.screenshot(screenshots / "profile_page_cold_start.png")


# The page's fetch, delayed for requests that have the model write a profile: the tiny model
# writes in milliseconds, a real one in seconds, and the page must show progress meanwhile.
SLOW_WRITING = """
const realFetch = window.fetch;
window.fetch = async (url, options) => {
  const answer = await realFetch(url, options);
  if (url === "/api/recommend" && JSON.parse(options.body).profile === null) await new Promise(r => setTimeout(r, 1500));
  return answer;
};
"""


def test_a_profile_is_written_from_the_history_with_progress_shown(page, screenshots):
    page.run(SLOW_WRITING)
    page.run("document.getElementById('user-id').focus()")
    page.type("u3")  # no stored profile: the model writes one
    written = answered(page, lambda: (
        page.press("Enter"),
        page.wait_for("document.getElementById('writing').checkVisibility() && "
                      "document.getElementById('write-elapsed').textContent.endsWith(' s')"),
        page.screenshot(screenshots / "profile_page_writing.png"),
    ))
    assert len(written) == 20
    assert page.run("document.getElementById('editor').value") == WRITTEN_PROFILE
    assert "profile written from the history" in page.run("document.getElementById('results-summary').textContent")
    assert not page.run("document.getElementById('writing').checkVisibility()")


def test_markup_in_a_profile_is_shown_as_text_never_run(page, screenshots):
    show_user(page, "u1")
    page.run(f"document.getElementById('editor').value = {json.dumps(MARKUP)}")
    click(page, "#rerank")
    assert page.run("document.getElementById('message').hidden")  # ranked, not refused
    assert json.loads(page.run("document.getElementById('export-json').textContent"))["dataframe_records"][0]["profile"] == MARKUP
    assert page.run("document.querySelectorAll('main b, main img, main script').length") == 0
    # An unknown user id with markup: the message shows it as typed.
    page.run("document.getElementById('user-id').value = ''")
    page.run("document.getElementById('user-id').focus()")
    page.type("<b>nobody</b><img src=x onerror=pwned=3>")
    page.press("Enter")
    assert message(page).startswith("No user '<b>nobody</b><img src=x onerror=pwned=3>' in the split")
    assert page.run("document.querySelectorAll('#message *').length") == 0
    assert not page.run(PWNED)
    page.screenshot(screenshots / "profile_page_markup.png")


@pytest.mark.parametrize(
    ("profile", "expected"),
    [("", "Profile is empty."), ("comedy " * 10_000, "Profile is too long: 10002 tokens, the recommender reads at most 64.")],
)
def test_an_empty_or_10000_word_profile_gets_a_message_on_the_page(page, profile, expected):
    show_user(page, "u2")
    page.run(f"document.getElementById('editor').value = {json.dumps(profile)}")
    assert len(click(page, "#rerank")) == 20  # the last list stays
    assert message(page) == expected
