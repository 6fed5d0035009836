"""The loan officer's page in a real browser: Debian's Chromium driven by Playwright,
against `agri serve` on the demo data (a separate process on a free port).

Screenshots go to tests/artifacts/ (kept by CI as test artifacts, ignored by git).
"""

import json
import urllib.request
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from collateral.api import app as api_app
from collateral.settings import Settings
from tests.support.web import ARTIFACTS, api_get, gcj02_kml, shot, sign_in

pytestmark = [pytest.mark.browser]


def test_sign_in_draws_the_branch_loans_parcels_and_farms(page, server):
    page.goto(server["base"] + "/")
    page.fill("#key", "agk_000000000000_wrong")
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("unknown or revoked")
    sign_in(page, server)
    rows = page.locator("#loans tbody tr")
    expect(rows).to_have_count(3)  # land and herds (2), rooftop plants (1)
    expect(page.locator("#who")).to_contain_text("ANXI-01")
    # the six pledged parcels (one for its carbon) and three farms are drawn, animals clustered
    assert page.locator("#map").get_attribute("data-parcels") == "6"
    assert page.locator("#map").get_attribute("data-farms") == "3"
    assert page.locator("#map").get_attribute("data-plants") == "2"
    assert page.locator(".marker-cluster").count() > 0
    assert page.locator(".leaflet-control-scale").count() == 1
    expect(page.locator("#coordinates")).to_contain_text("centre 25.0")
    page.mouse.move(900, 400, steps=4)
    expect(page.locator("#coordinates")).to_contain_text("cursor 25.0")
    # sortable: LTV descending puts the watch loan first
    page.click("#loans th[data-sort=ltv]")
    page.click("#loans th[data-sort=ltv]")
    assert rows.first.get_attribute("data-loan") == "LN-ANXI-0001"
    shot(page, "01-signed-in")


def test_a_loan_shows_the_same_figures_as_the_api(page, server):
    sign_in(page, server)
    page.click("#loans tbody tr[data-loan=LN-ANXI-0001]")
    page.wait_for_selector("#detail [data-field=eligible]")
    loan = api_get(server, "/v1/loans/LN-ANXI-0001")
    valuation = api_get(server, f"/v1/valuations/{loan['latest_valuation']['valuation_id']}")
    eligible = page.inner_text("#detail [data-field=eligible]").replace(",", "")
    assert Decimal(eligible) == Decimal(valuation["eligible_value_cny"])
    assert page.inner_text("#detail [data-field=ltv]") == valuation["ltv"]
    refs = page.locator("#detail tr[data-ref]")
    assert sorted(refs.evaluate_all("rows => rows.map(r => r.dataset.ref)")) == sorted(
        i["ref"] for i in valuation["items"]
    )
    for item in valuation["items"]:
        row = page.locator(
            f"#detail tr[data-ref='{item['ref']}'][data-kind={item['kind']}] td.eligible"
        )
        assert Decimal(row.inner_text().replace(",", "")) == Decimal(item["eligible_value_cny"])
    expect(page.locator("#detail")).to_contain_text("disturbance")  # F-08's open clear-cut
    assert page.locator("#history-chart canvas").count() == 1
    shot(page, "02-loan")
    # the printable report: the breakdown without the map and the list
    page.emulate_media(media="print")
    expect(page.locator("#map-panel")).to_be_hidden()
    expect(page.locator("#detail [data-field=eligible]")).to_be_visible()
    page.pdf(path=str(ARTIFACTS / "02-loan-report.pdf"))
    page.emulate_media(media="screen")


def test_the_portfolio_and_a_forest_show_their_carbon(page, server):
    sign_in(page, server)
    listed = api_get(server, "/v1/loans")
    total = sum(Decimal(x["latest_valuation"]["carbon_t_co2e"]) for x in listed)
    assert total > 0
    shown = page.locator("#portfolio-carbon")
    assert Decimal(shown.get_attribute("data-total")) == total
    expect(shown).to_contain_text("t CO2e in 1 loan(s)")
    page.click("#loans tbody tr[data-loan=LN-ANXI-0001]")
    page.wait_for_selector("#detail tr[data-ref=F-12]")
    expect(page.locator("#detail tr[data-ref=F-12]").first).to_contain_text("forest carbon")
    page.click("#detail a[data-parcel=F-08]")
    carbon = page.locator("#parcel-carbon[data-stock]")
    carbon.wait_for(timeout=30_000)
    account = api_get(server, "/v1/parcels/F-08/carbon")
    assert carbon.get_attribute("data-stock") == account["stock_t_co2e"]
    expect(carbon).to_contain_text("reversed")
    shot(page, "carbon")


def test_a_parcel_shows_its_profile_and_ndvi_overlay(page, server):
    sign_in(page, server)
    page.click("#loans tbody tr[data-loan=LN-ANXI-0001]")
    page.click("#detail a[data-parcel=F-08]")
    page.wait_for_selector("#profile-chart canvas")
    expect(page.locator("#detail h2")).to_contain_text("F-08")
    expect(page.locator("#detail li[data-event=open]")).to_have_count(1)
    expect(page.locator(".leaflet-image-layer")).to_have_count(1)
    expect(page.locator("#legend")).to_be_visible()
    profile = api_get(server, "/v1/parcels/F-08/profile")
    assert f"{profile['health_index']:.2f}" in page.inner_text("#detail")
    sampling = profile["sampling"]  # how sure: the clear images behind the figure
    expect(page.locator("#detail .sampling")).to_contain_text(
        f"from {sampling['clear_dates']} clear image(s) in the last 60 days"
    )
    (event,) = profile["events"]
    expect(page.locator("#detail li[data-event=open]")).to_contain_text(
        f"{event['detection_delay_days']} days after it was first seen"
    )
    shot(page, "03-parcel")


def test_a_farm_shows_its_headcount_and_alerts(page, server):
    sign_in(page, server)
    page.click("#loans tbody tr[data-loan=LN-ANXI-0001]")
    page.click("#detail a[data-farm=FARM-SOW]")
    page.wait_for_selector("#headcount-chart canvas")
    count = api_get(server, "/v1/farms/FARM-SOW/headcount")
    verified = count["categories"]["breeding_sow"]["verified"]
    cell = page.locator("#detail tr[data-category=breeding_sow] td").nth(1)
    assert int(cell.inner_text()) == verified == 177
    shot(page, "04-farm")


def test_a_solar_loan_shows_its_dscr_and_a_plant_its_energy_against_expected_and_peers(
    page, server
):
    sign_in(page, server)
    page.click("#loans tbody tr[data-loan=LN-ANXI-0003]")
    page.wait_for_selector("#detail [data-field=dscr]")
    loan = api_get(server, "/v1/loans/LN-ANXI-0003")
    valuation = api_get(server, f"/v1/valuations/{loan['latest_valuation']['valuation_id']}")
    assert page.inner_text("#detail [data-field=dscr-p50]") == valuation["solar"]["dscr_p50"]
    assert page.inner_text("#detail [data-field=dscr-p90]") == valuation["solar"]["dscr_p90"]
    expect(page.locator("#detail tr[data-kind=solar_plant]")).to_have_count(2)
    page.click("#detail a[data-plant=PV-SOW-1]")
    page.wait_for_selector("#plant-chart canvas")
    expect(page.locator("#detail h2")).to_contain_text("PV-SOW-1")
    days = api_get(server, "/v1/plants/PV-SOW-1/days?limit=30")
    made = sum(d["energy_kwh"] or 0 for d in days)
    assert page.inner_text("#detail [data-field=plant-made]") == f"{made:,.0f}"
    expected = sum(d["expected_kwh"] or 0 for d in days)
    assert page.inner_text("#detail [data-field=plant-expected]") == f"{expected:,.0f}"
    legend = page.locator("#plant-chart .u-legend").inner_text()
    assert "made kWh" in legend and "expected kWh" in legend and "neighbours" in legend
    shot(page, "05-plant")
    page.click("#portfolio")
    solar = page.locator("#detail [data-figure=solar]")
    portfolio = api_get(server, "/v1/portfolio")["pledged_solar"]
    expect(solar).to_contain_text(f"{Decimal(portfolio['kwp']):.1f} kWp")
    assert portfolio["loan_ids"] == ["LN-ANXI-0003"]


def test_revalue_now_adds_a_valuation(page, server):
    sign_in(page, server)
    before = api_get(server, "/v1/loans/LN-ANXI-0002/valuations")
    page.click("#loans tbody tr[data-loan=LN-ANXI-0002]")
    page.click("#revalue")
    expect(page.locator("#status")).to_contain_text("revalued", timeout=30_000)
    after = api_get(server, "/v1/loans/LN-ANXI-0002/valuations")
    assert len(after) == len(before) + 1
    newest = after[-1]["valuation_id"]
    expect(page.locator("#detail")).to_contain_text(newest)
    shot(page, "05-revalued")


def test_an_officer_of_another_branch_sees_none_of_it(page, server):
    sign_in(page, server, "stranger")
    expect(page.locator("#loans tbody tr")).to_have_count(0)
    expect(page.locator("#no-loans")).to_be_visible()
    assert page.locator("#map").get_attribute("data-parcels") == "0"
    assert page.locator("#map").get_attribute("data-farms") == "0"
    assert "LN-ANXI" not in page.content()
    shot(page, "06-other-branch")


def test_without_the_bundle_the_server_says_how_to_build_it(tmp_path, monkeypatch, server):
    monkeypatch.setattr(api_app, "STATIC_DIR", tmp_path)
    response = TestClient(api_app.create_app(server["engine"], Settings(data_dir=tmp_path))).get(
        "/"
    )
    assert response.status_code == 503 and "make web" in response.text


def test_the_api_docs_work_with_no_outside_network(browser, server):
    """A bank intranet has no internet: /docs is served from our own files. Every request
    that leaves this machine is blocked (and recorded); the operations still list."""
    from urllib.parse import urlparse

    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    outside = []

    def only_this_machine(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_machine)
    page = context.new_page()
    page.goto(server["base"] + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    operations = page.locator(".opblock-summary-path").all_inner_texts()
    shot(page, "api-docs-offline")
    context.close()
    assert outside == []
    assert len(operations) >= 25
    # nor from a host other than this one: the page names no outside address at all
    with urllib.request.urlopen(server["base"] + "/docs", timeout=30) as response:
        assert "http://" not in (html := response.read().decode()) and "https://" not in html
    assert any("/v1/loans/{loan_id}/valuations" in o for o in operations)


def test_a_claim_uploaded_from_a_phone_map_is_checked_and_accepted(page, server, tmp_path):
    sign_in(page, server)
    page.click("#new-claim")
    page.select_option("#claim-kind", "tea_garden")
    page.fill("#claim-owner", "Chen Ming")
    page.select_option("#claim-crs", "gcj02")
    page.fill("#claim-planted", "2008")
    page.set_input_files(
        "#claim-file", str(gcj02_kml(server["engine"], "T-03", tmp_path / "plot.kml"))
    )
    page.fill("#claim-as-of", "2024-12-31")
    page.click("#claim-submit")
    page.wait_for_selector("#claim-report[data-verdict]", timeout=30_000)
    report = page.locator("#claim-report")
    assert report.get_attribute("data-verdict") == "consistent"
    claim = api_get(server, f"/v1/claims/{report.get_attribute('data-claim')}")
    expect(page.locator("#claim-summary")).to_have_text(claim["report"]["summary"])
    assert claim["crs"] == "gcj02" and claim["attributes"] == {"planted_year": 2008}
    tea_share = page.inner_text("#claim-report tr[data-class=tea_garden] td:nth-child(3)")
    assert tea_share == f"{round(claim['report']['land_cover']['shares']['tea_garden'] * 100)}%"
    assert page.locator("#claim-chart canvas").count() == 1
    shot(page, "claim-consistent")
    page.fill("#claim-parcel-id", "T-03-WEB")
    page.click("#claim-accept")
    expect(page.locator("#claim-accepted")).to_contain_text("parcel T-03-WEB")
    assert api_get(server, f"/v1/claims/{claim['claim_id']}")["state"] == "accepted"
    assert api_get(server, "/v1/parcels/T-03-WEB/profile")["kind"] == "tea_garden"


def test_a_plot_drawn_on_the_map_that_is_forest_is_inconsistent(page, server):
    from shapely.geometry import shape

    from remote_sensing import store as rs_store

    sign_in(page, server)
    page.click("#new-claim")
    forest = shape(json.loads(rs_store.get_parcel(server["engine"], "F-04")["geometry_geojson"]))
    inner = forest.buffer(-0.0003).minimum_rotated_rectangle.intersection(forest.buffer(-0.0003))
    corners = list(inner.exterior.coords)[:-1]
    xmin, ymin, xmax, ymax = forest.bounds
    page.evaluate(f"window.agriMap.fitBounds([[{ymin}, {xmin}], [{ymax}, {xmax}]])")
    page.click("#claim-draw")
    box = page.locator("#map").bounding_box()
    for lon, lat in corners:
        x, y = page.evaluate(
            "([lat, lon]) => { const p = window.agriMap.latLngToContainerPoint([lat, lon]);"
            " return [p.x, p.y]; }",
            [lat, lon],
        )
        page.mouse.click(box["x"] + x, box["y"] + y)
    expect(page.locator("#claim-plot")).to_contain_text(f"{len(corners)} corner(s) drawn")
    page.click("#claim-finish")
    page.fill("#claim-as-of", "2024-12-31")
    page.click("#claim-submit")
    page.wait_for_selector("#claim-report[data-verdict]", timeout=30_000)
    assert page.locator("#claim-report").get_attribute("data-verdict") == "inconsistent"
    expect(page.locator("#claim-report .flags")).to_contain_text("forest")
    assert page.locator("#claim-accept").count() == 0
    shot(page, "claim-inconsistent")
    # a file that is not a plot is refused with the reason, nothing stored
    before = len(api_get(server, "/v1/claims"))
    page.set_input_files(
        "#claim-file",
        files=[
            {
                "name": "plot.txt",
                "mimeType": "text/plain",
                "buffer": b"25.08,118.17\n25.08,118.172\n25.082,118.172",
            }
        ],
    )
    page.click("#claim-submit")
    expect(page.locator("#claim-report .error")).to_contain_text("longitude first")
    assert len(api_get(server, "/v1/claims")) == before


def test_the_branch_portfolio_shows_the_api_figures_and_links_to_loans(page, server):
    sign_in(page, server)
    page.click("#portfolio")
    page.wait_for_selector("#detail [data-figure=principal]")
    portfolio = api_get(server, "/v1/portfolio")
    listed = api_get(server, "/v1/loans")
    assert Decimal(portfolio["principal_cny"]) == sum(Decimal(x["principal_cny"]) for x in listed)
    assert Decimal(portfolio["eligible_value_cny"]) == sum(
        Decimal(x["latest_valuation"]["eligible_value_cny"]) for x in listed
    )
    shown = page.inner_text("#detail [data-figure=eligible]").replace(",", "")
    assert Decimal(shown) == Decimal(portfolio["eligible_value_cny"])
    assert portfolio["by_status"]["watch"]["loan_ids"] == ["LN-ANXI-0001"]
    assert set(portfolio["pledged_ha"]) == {"tea_garden", "forest"}
    assert portfolio["open_alerts"]["disturbance"]["loan_ids"] == ["LN-ANXI-0001"]
    assert Decimal(portfolio["pledged_carbon_t_co2e"]) > 0
    row = page.locator("#detail tr[data-figure='status:watch']")
    expect(row).to_contain_text("LN-ANXI-0001")
    row.locator("a[data-loan-link=LN-ANXI-0001]").click()
    page.wait_for_selector("#detail[data-loan=LN-ANXI-0001]")
    shot(page, "portfolio")
    # another branch's officer sees none of it
    stranger = api_get(server, "/v1/portfolio", who="stranger")
    assert stranger["loans"] == 0 and stranger["branch"] == "XIAMEN-02"
