"""The officer's language on the server: the catalogues agree, every composed sentence
has a code the catalogues word, problem details follow Accept-Language, stored alerts
and valuation reasons carry codes the page and the report translate, and the PDF report
of a valuation says the API's figures in Chinese and English."""

import io
import json
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pypdf
import pytest
from fastapi.testclient import TestClient

from agri_common import wording
from collateral import auth, loans
from collateral.api.app import create_app
from tests.support.world import WORLD_AS_OF

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\{(\w+)(?:\|\w+)?\}")


def test_the_catalogues_have_the_same_keys_and_placeholders():
    en, zh = wording.catalogue("en"), wording.catalogue("zh-CN")
    assert set(en) == set(zh)
    for key in en:
        assert en[key].strip() and zh[key].strip(), key
        assert set(PLACEHOLDER.findall(en[key])) == set(PLACEHOLDER.findall(zh[key])), key
        chinese = re.search(r"[\u4e00-\u9fff]", zh[key])
        if not key.startswith("ui.lang."):  # each language is named in its own words
            assert chinese or not re.search(r"[a-z]{4}", PLACEHOLDER.sub("", en[key])), key


def test_every_code_the_server_composes_is_in_the_catalogues():
    codes = set()
    for path in [*ROOT.glob("collateral/**/*.py"), *ROOT.glob("bioassets/*.py")]:
        codes |= set(re.findall(r'Said\(\s*"([\w.]+)"', path.read_text()))
    codes |= {"alert.death", "alert.sale"}  # rules.py: Said(f"alert.{event['kind']}")
    assert len(codes) > 25
    assert not codes - set(wording.catalogue("zh-CN")), codes - set(wording.catalogue("zh-CN"))


# keys looked up by a machine value (``word("status", v)``, ``{kind|kind}``), not by name
FAMILIES = (
    "status.",
    "kind.",
    "category.",
    "alert_kind.",
    "event_kind.",
    "event_state.",
    "role.",
    "species.",
    "age_class.",
    "crs.",
    "land_class.",
    "season.",
    "carbon_basis.",
    "offline.",
    "energy_source.",
    "carbon_market.",
    "ltv_band.",
    "confidence.",
    "verdict.",
    "noun.",
    "ui.lang.",
    "alert.",
    "stale.suspected.",  # valuation.py: f"stale.{code of the suspected reason}"
    "validation.",  # wording.validation_message: pydantic's error types
)


def test_every_catalogue_entry_is_used():
    """No wording left behind: each key is named in the code, the page or the report
    template, or belongs to a family looked up by value."""
    places = [
        *ROOT.glob("agri_common/*.py"),
        *ROOT.glob("telemetry/**/*.py"),
        *ROOT.glob("remote_sensing/**/*.py"),
        *ROOT.glob("bioassets/**/*.py"),
        *ROOT.glob("solar/**/*.py"),
        *ROOT.glob("collateral/**/*.py"),
        *ROOT.glob("collateral/templates/*.html"),
        *ROOT.glob("web/src/*"),
    ]
    names = set()  # every dotted name in the sources, as a whole token
    for place in places:
        names.update(re.findall(r"[A-Za-z_][\w.]*", place.read_text(encoding="utf-8")))
    unused = [
        key
        for key in wording.catalogue("en")
        if not key.startswith(FAMILIES)
        and not re.fullmatch(r"problem\.\d{3}", key)
        and key not in names
    ]
    assert unused == []


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR, en;q=0.5, zh;q=0.7", "zh-CN"),
        ("de", "en"),
        (None, "en"),
        ("zh;q=0, en", "en"),
    ],
)
def test_accept_language(header, locale):
    assert wording.negotiate(header) == locale


@pytest.mark.parametrize(
    ("value", "locale", "shown"),
    [
        ("1570637.81", "zh-CN", "157.06万元"),
        ("9999.5", "zh-CN", "9,999.50元"),
        ("-25000", "zh-CN", "-2.50万元"),
        ("1570637.81", "en", "CNY 1,570,637.81"),
        (None, "en", "-"),
    ],
)
def test_amounts_as_banking_documents_write_them(value, locale, shown):
    assert wording.amount(value, locale) == shown


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_formulas_are_coded_steps_that_say_the_stored_english(world):
    loans.create_loan(
        world,
        loans.LoanIn(
            loan_id="F-WORDS",
            borrower="Lin Fang",
            branch="ANXI-01",
            principal_cny="500000",
            parcel_ids=["T-02", "F-05"],
            carbon=[{"parcel_id": "F-05", "basis": "stock"}],
            herds=[{"farm_id": "FARM-CATTLE", "categories": ["dairy_cow"]}],
        ),
    )
    valuation = loans.value_now(world, "F-WORDS", datetime.fromisoformat(WORLD_AS_OF))
    assert {i["kind"] for i in valuation["items"]} >= {
        "tea_garden",
        "forest",
        "carbon_sink",
        "herd",
    }
    for item in valuation["items"]:
        steps = item["formula_coded"]
        assert steps and all(steps), item["ref"]
        english = "; ".join(wording.text(s["code"], "en", **s["params"]) for s in steps)
        assert english == item["formula"]
        chinese = "；".join(wording.text(s["code"], "zh-CN", **s["params"]) for s in steps)
        assert "合格价值" in chinese
    ltv = valuation["formula_coded"]
    assert wording.text(ltv["code"], "en", **ltv["params"]) == valuation["formula"]
    assert wording.text(ltv["code"], "zh-CN", **ltv["params"]).startswith("抵押率 = 贷款余额")


def test_a_said_sentence_is_english_and_carries_its_code():
    said = wording.Said(
        "alert.status_worsened", from_status="ok", to_status="watch", from_ltv="0.5", to_ltv="0.75"
    )
    assert said == "status ok -> watch; LTV 0.5 -> 0.75"
    assert json.dumps({"d": said}) == '{"d": "status ok -> watch; LTV 0.5 -> 0.75"}'
    zh = wording.translate(said, wording.coded(said), "zh-CN")
    assert zh == "状态 正常 → 关注；抵押率 0.5 → 0.75"
    assert wording.translate("a plain sentence", None, "zh-CN") == "a plain sentence"


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_problem_details_follow_accept_language(world):
    client = TestClient(create_app(world))
    key = {"Authorization": f"Bearer {auth.create_key(world, 'loan_officer', 'ANXI-01')}"}
    english = client.get("/v1/loans/NO-SUCH", headers=key)
    assert english.status_code == 404
    assert english.json()["title"] == "Not Found"
    assert english.json()["detail"] == "loan 'NO-SUCH' does not exist"
    chinese = client.get("/v1/loans/NO-SUCH", headers={**key, "Accept-Language": "zh-CN,zh;q=0.9"})
    body = chinese.json()
    assert chinese.status_code == 404 and chinese.headers["content-language"] == "zh-CN"
    assert body["title"] == "未找到" and body["detail"] == "贷款 'NO-SUCH' 不存在"
    assert body["code"] == "problem.not_found" and body["params"]["id"] == "'NO-SUCH'"
    unsigned = client.get("/v1/loans", headers={"Accept-Language": "zh-CN"})
    assert unsigned.status_code == 401 and "API 密钥" in unsigned.json()["detail"]
    bad = {"loan_id": "X", "borrower": "", "branch": "ANXI-01", "principal_cny": "1"}
    invalid = client.post("/v1/loans", json=bad, headers={**key, "Accept-Language": "zh-CN"})
    assert invalid.status_code == 422 and invalid.json()["title"] == "无法处理"
    assert "borrower: 至少 1 个字符" in invalid.json()["detail"], invalid.json()
    assert "String should have" in invalid.json()["errors"][0]["message"]  # pydantic's, kept
    english = client.post("/v1/loans", json=bad, headers=key).json()
    assert "borrower: String should have at least 1 character" in english["detail"]
    paris = {
        "type": "Polygon",
        "coordinates": [[[2.35, 48.85], [2.36, 48.85], [2.36, 48.86], [2.35, 48.85]]],
    }
    claim = {"kind": "tea_garden", "crs": "gcj02", "geometry": paris}
    refused = client.post("/v1/claims", json=claim, headers={**key, "Accept-Language": "zh-CN"})
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith(
        "申请未受理：地块在中国大陆以外，但 gcj02 是中国坐标系"
    )
    english = client.post("/v1/claims", json=claim, headers=key).json()["detail"]
    assert english.startswith("claim refused: the plot is outside mainland China, but gcj02")
    operator = {"Authorization": f"Bearer {auth.create_key(world, 'operator', None)}"}
    refused = client.get("/v1/loans", headers={**operator, "Accept-Language": "zh"})
    assert refused.status_code == 403 and refused.json()["detail"].startswith("角色 operator 无权")


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_alerts_and_reasons_carry_codes_that_read_in_chinese(world):
    client = TestClient(create_app(world))
    key = {"Authorization": f"Bearer {auth.create_key(world, 'risk_admin', None)}"}
    alerts = client.get("/v1/alerts", headers=key).json()
    coded = [a for a in alerts if a.get("code")]
    assert coded and len(coded) == len(alerts)  # livestock, parcel and loan alike
    for a in coded:
        assert wording.text(a["code"], "en", **a["params"]) == a["detail"]
        assert re.search(r"[\u4e00-\u9fff]", wording.text(a["code"], "zh-CN", **a["params"]))
    herd = client.get("/v1/farms/FARM-SOW/headcount", headers=key).json()
    reasons = [u for c in herd["categories"].values() for u in c["unverified"]]
    assert reasons and all(u["reason_coded"]["code"].startswith("unverified.") for u in reasons)


def _pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_the_pdf_report_says_the_api_figures_in_both_languages(world):
    loans.create_loan(
        world,
        loans.LoanIn(
            loan_id="PDF-1",
            borrower="王辉",
            branch="ANXI-01",
            principal_cny="800000",
            parcel_ids=["T-01", "F-03"],
            herds=[{"farm_id": "FARM-SOW", "categories": ["breeding_sow"]}],
        ),
    )
    valuation = loans.value_now(world, "PDF-1", datetime.fromisoformat(WORLD_AS_OF))
    client = TestClient(create_app(world))
    key = {"Authorization": f"Bearer {auth.create_key(world, 'loan_officer', 'ANXI-01')}"}
    api = client.get(f"/v1/valuations/{valuation['valuation_id']}", headers=key).json()
    texts = {}
    for lang in ("zh-CN", "en"):
        response = client.get(
            f"/v1/valuations/{valuation['valuation_id']}/report.pdf",
            params={"lang": lang},
            headers=key,
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pdf"
        assert response.content.startswith(b"%PDF-")
        texts[lang] = _pdf_text(response.content)
    for lang, words in texts.items():
        flat = re.sub(r"\s+", "", words)
        assert api["valuation_id"] in flat
        for figure in (
            api["principal_cny"],
            api["eligible_value_cny"],
            api["collateral_value_cny"],
        ):
            assert f"{Decimal(figure):,.2f}" in flat, (lang, figure)
        for item in api["items"]:
            assert f"{Decimal(item['eligible_value_cny']):,.2f}" in flat, (lang, item["ref"])
        assert (
            api["ltv"] in flat and api["prices_version"] in flat and api["policy_version"] in flat
        )
    zh = re.sub(r"\s+", "", texts["zh-CN"])
    for word in (
        "押品估值报告",
        "借款人",
        "王辉",
        "茶园",
        "林地",
        "能繁母猪",
        "抵押率",
        "公顷受扰动",
    ):
        assert word in zh, word
    assert wording.amount(api["eligible_value_cny"], "zh-CN") in zh
    assert wording.catalogue("zh-CN")[f"status.{api['status']}"] in zh
    assert "Collateral valuation report" in texts["en"] and "押品" not in texts["en"]
    chosen = client.get(
        f"/v1/valuations/{valuation['valuation_id']}/report.pdf",
        headers={**key, "Accept-Language": "zh-CN,zh;q=0.9"},
    )
    assert chosen.headers["content-language"] == "zh-CN"
    other_branch = {"Authorization": f"Bearer {auth.create_key(world, 'loan_officer', 'XX-99')}"}
    hidden = client.get(
        f"/v1/valuations/{valuation['valuation_id']}/report.pdf", headers=other_branch
    )
    assert hidden.status_code == 404
