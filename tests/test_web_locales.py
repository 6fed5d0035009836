"""The officer's page in Simplified Chinese and in English, in Debian's Chromium: every
screen walked in both languages against the catalogues (nothing asked for that a
catalogue lacks, no English interface text left on a Chinese page, no raw key shown),
amounts as each locale writes them, the language switch remembered, the PDF report
behind the print button, and axe-core's accessibility check of the main screens."""

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from agri_common import wording
from tests.support.paths import REPO_ROOT
from tests.support.web import api_get, gcj02_kml, new_page, shot, sign_in

pytestmark = [pytest.mark.browser]

AXE = REPO_ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
KEY_SHOWN = re.compile(r"\b(?:ui|report|alert|alert_kind|status|kind|problem)\.[a-z_]+\b")
LOCALES = {"zh-CN": "zh-CN", "en-US": "en"}


def as_shown(params: dict, locale: str) -> dict:
    """Parameters as the page shows them: an instant as the locale's day and the minute."""
    out = {}
    for key, value in params.items():
        if re.match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", value):
            y, m, d = (int(x) for x in value[:10].split("-"))
            shown_day = f"{y}年{m}月{d}日" if locale == "zh-CN" else value[:10]
            value = f"{shown_day} {value[11:16]} UTC"
        out[key] = value
    return out


def english_interface_text() -> list[str]:
    """The English wording of the page's own texts (several words, no parameters), which
    a Chinese page must not show."""
    return [
        text
        for key, text in wording.catalogue("en").items()
        if key.startswith("ui.")
        and not key.startswith("ui.lang.")
        and "{" not in text
        and len(text.split()) >= 2
    ]


def check_words(page, locale: str, screen: str) -> None:
    missing = page.evaluate("() => [...window.agriMissing]")
    assert missing == [], (screen, missing)
    body = page.inner_text("body")
    assert not KEY_SHOWN.search(body), (screen, KEY_SHOWN.search(body).group(0))
    if locale == "zh-CN":
        assert re.search(r"[\u4e00-\u9fff]", body), screen
        left = [text for text in english_interface_text() if text in body]
        assert left == [], (screen, left)
    shot(page, f"locale-{locale}-{screen}")


def walk(page, server, locale: str, tmp_path: Path) -> dict:
    """Every screen of the page; returns what the API said, to compare figures."""
    page.goto(server["base"] + "/")
    check_words(page, locale, "0-signin")
    sign_in(page, server)
    check_words(page, locale, "1-loans")
    page.click("#loans tbody tr[data-loan=LN-ANXI-0001]")
    page.wait_for_selector("#detail[data-loan=LN-ANXI-0001] #history-chart canvas")
    check_words(page, locale, "2-loan")
    page.click("#detail a[data-parcel=F-08]")
    page.wait_for_selector("#parcel-carbon[data-stock]", timeout=30_000)
    check_words(page, locale, "3-parcel")
    page.click("#loans tbody tr[data-loan=LN-ANXI-0001]")
    page.click("#detail a[data-farm=FARM-SOW]")
    page.wait_for_selector("#headcount-chart canvas")
    check_words(page, locale, "4-farm")
    page.click("#loans tbody tr[data-loan=LN-ANXI-0003]")
    page.wait_for_selector("#detail[data-loan=LN-ANXI-0003] [data-field=dscr]")
    check_words(page, locale, "4-solar-loan")
    page.click("#detail a[data-plant=PV-SOW-1]")
    page.wait_for_selector("#plant-chart canvas")
    check_words(page, locale, "4-plant")
    page.click("#portfolio")
    page.wait_for_selector("#detail [data-figure=solar]")
    check_words(page, locale, "5-portfolio")
    page.click("#new-claim")
    check_words(page, locale, "6-claim-form")
    page.select_option("#claim-crs", "gcj02")
    page.set_input_files(
        "#claim-file", str(gcj02_kml(server["engine"], "T-06", tmp_path / "t.kml"))
    )
    page.fill("#claim-as-of", "2024-12-31")
    page.click("#claim-submit")
    page.wait_for_selector("#claim-report[data-verdict]", timeout=30_000)
    check_words(page, locale, "7-claim-report")
    page.click("#loans tbody tr[data-loan=LN-ANXI-0001]")
    page.wait_for_selector("#detail[data-loan=LN-ANXI-0001] [data-field=eligible-headline]")
    return api_get(server, "/v1/loans/LN-ANXI-0001")


@pytest.mark.parametrize("browser_locale", ["zh-CN", "en-US"])
def test_every_screen_in_the_browser_language(browser, server, browser_locale, tmp_path):
    locale = LOCALES[browser_locale]
    context, page = new_page(browser, browser_locale)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        loan = walk(page, server, locale, tmp_path)
        assert page.get_attribute("html", "lang") == locale
        eligible = loan["latest_valuation"]["eligible_value_cny"]
        headline = page.inner_text("#detail [data-field=eligible-headline]")
        assert headline == wording.amount(eligible, locale)  # 157.06万元 / CNY 1,570,637.81
        status = loan["latest_valuation"]["status"]
        expect(page.locator("#detail [data-field=status]")).to_have_text(
            wording.catalogue(locale)[f"status.{status}"]
        )
        alerts = api_get(server, "/v1/alerts?loan_id=LN-ANXI-0001")
        shown = page.inner_text("#detail .alerts")
        for a in alerts:  # the server's coded details, worded in the page's language
            assert wording.text(a["code"], locale, **as_shown(a["params"], locale)) in shown, a
    finally:
        context.close()
    assert errors == [], errors


def test_the_language_switch_is_remembered(browser, server):
    context, page = new_page(browser, "en-US")
    try:
        sign_in(page, server)
        expect(page.locator("#portfolio")).to_have_text("Portfolio")
        page.select_option("header .lang-choice", "zh-CN")
        page.wait_for_selector("body[data-ready=true]", state="attached", timeout=30_000)
        expect(page.locator("#portfolio")).to_have_text("网点组合")
        expect(page.locator("#loans th[data-sort=status]")).to_have_text("状态")
        page.reload()  # still signed in (the tab's key) and still Chinese (remembered)
        page.wait_for_selector("body[data-ready=true]", state="attached", timeout=30_000)
        expect(page.locator("#new-claim")).to_have_text("新建地块申请")
        assert page.get_attribute("html", "lang") == "zh-CN"
        statuses = page.locator("#loans tbody .status").all_inner_texts()
        assert statuses and set(statuses) <= {"正常", "关注", "追加担保", "未估值"}
    finally:
        context.close()


def test_print_gives_the_server_pdf_of_the_valuation_shown(browser, server):
    context, page = new_page(browser, "zh-CN")
    try:
        sign_in(page, server)
        page.click("#loans tbody tr[data-loan=LN-ANXI-0001]")
        page.wait_for_selector("#detail[data-valuation^=VAL-]")
        with page.expect_popup() as popup:
            page.click("#print")
        popup.value.close()
        url = page.get_attribute("#detail", "data-report")
        size, head = page.evaluate(
            """async (u) => { const b = await (await fetch(u)).arrayBuffer();
                 return [b.byteLength, new TextDecoder().decode(b.slice(0, 5))]; }""",
            url,
        )
        assert head == "%PDF-" and size > 10_000
    finally:
        context.close()


def axe_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("browser_locale", ["zh-CN", "en-US"])
def test_the_main_screens_pass_axe(browser, server, browser_locale):
    assert AXE.exists(), "axe-core is missing: `make web` installs the page's npm packages"
    context, page = new_page(browser, browser_locale)
    found = {}
    try:
        page.goto(server["base"] + "/")
        found["signin"] = axe_violations(page)
        sign_in(page, server)
        found["loans"] = axe_violations(page)
        page.click("#loans tbody tr[data-loan=LN-ANXI-0001]")
        page.wait_for_selector("#detail[data-loan=LN-ANXI-0001] #history-chart canvas")
        found["loan"] = axe_violations(page)
        page.click("#loans tbody tr[data-loan=LN-ANXI-0003]")
        page.click("#detail a[data-plant=PV-SOW-1]")
        page.wait_for_selector("#plant-chart canvas")
        found["plant"] = axe_violations(page)
        page.click("#portfolio")
        page.wait_for_selector("#detail [data-figure=principal]")
        found["portfolio"] = axe_violations(page)
        page.click("#new-claim")
        found["claim-form"] = axe_violations(page)
    finally:
        context.close()
    serious = {screen: v for screen, v in found.items() if v}
    assert serious == {}, json.dumps(serious, indent=1)
