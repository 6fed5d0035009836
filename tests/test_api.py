"""The HTTP API against the sample world (SQLite, then PostgreSQL): contract, roles and
branches, every error class, and a property-based run from the OpenAPI document."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from sqlalchemy import func, select

from bioassets import rules
from bioassets import store as bio_store
from bioassets.payloads import Reading
from collateral import auth, claims, errors, loans, pledges, prices
from collateral.api.app import create_app
from collateral.api.limits import RateLimiter
from collateral.db import engine_url, make_engine, upgrade
from collateral.tables import audit_log, valuations
from collateral.tables import loans as loans_table
from collateral.valuation import ValuationError
from remote_sensing.claims.plots import PlotError
from tests.support.livestock import seed_livestock
from tests.support.paths import SAMPLE_TILES
from tests.support.world import WORLD_AS_OF

PROBLEM = "application/problem+json"


@pytest.fixture
def api(world):
    """A client and keys: two officers of different branches, a risk admin, an operator."""
    client = TestClient(create_app(world))
    keys = {
        "officer": auth.create_key(world, "loan_officer", "ANXI-01"),
        "stranger": auth.create_key(world, "loan_officer", "XIAMEN-02"),
        "risk": auth.create_key(world, "risk_admin", None),
        "operator": auth.create_key(world, "operator", None),
    }

    def call(method: str, path: str, who: str | None = "officer", headers=None, **kwargs):
        headers = {**(headers or {}), **({"Authorization": f"Bearer {keys[who]}"} if who else {})}
        return client.request(method, path, headers=headers, **kwargs)

    return call


def _count(engine, table) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(table)).scalar_one()


def _loan(loan_id: str, branch: str = "ANXI-01", **over) -> dict:
    return {
        "loan_id": loan_id,
        "borrower": "Lin Fang",
        "branch": branch,
        "principal_cny": "1200000.00",
        "parcel_ids": ["F-03", "T-07"],
        "herds": [{"farm_id": "FARM-SOW", "categories": ["breeding_sow"]}],
        **over,
    }


def _problem(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"]
    for word in words:
        assert word in body["detail"], body
    return body


def test_the_loan_and_valuation_contract(api, world):
    created = api("POST", "/v1/loans", json=_loan("API-1"))
    assert created.status_code == 201, created.text
    assert created.json()["principal_cny"] == "1200000.00"
    valued = api("POST", "/v1/loans/API-1/valuations", json={"as_of": WORLD_AS_OF})
    assert valued.status_code == 201, valued.text
    doc = valued.json()
    for key in ("valuation_id", "loan_id", "as_of", "items", "collateral_value_cny"):
        assert key in doc
    assert doc["as_of"] == WORLD_AS_OF and doc["loan_id"] == "API-1"
    assert {i["ref"] for i in doc["items"]} == {"F-03", "T-07", "FARM-SOW/breeding_sow"}
    for i in doc["items"]:
        assert set(i) >= {"kind", "ref", "value_cny", "eligible_value_cny", "haircut"}
        assert set(i) >= {"confidence", "evidence", "formula"}
        Decimal(i["value_cny"]), Decimal(i["eligible_value_cny"])  # decimal strings
    total = sum(Decimal(i["eligible_value_cny"]) for i in doc["items"])
    assert Decimal(doc["eligible_value_cny"]) == total
    assert Decimal(doc["ltv"]) == (Decimal("1200000.00") / total).quantize(Decimal("0.0001"))
    assert doc["status"] in ("ok", "watch", "margin_call")

    # the same document from history and by id, and recomputable
    history = api("GET", "/v1/loans/API-1/valuations").json()
    assert [h["valuation_id"] for h in history] == [doc["valuation_id"]]
    again = api("GET", f"/v1/valuations/{doc['valuation_id']}").json()
    assert again["items"] == doc["items"] and again["ltv"] == doc["ltv"]
    with_inputs = api("GET", f"/v1/valuations/{doc['valuation_id']}?inputs=true").json()
    assert with_inputs["inputs"]["prices"]["version"] == "default-2020"
    assert api("GET", f"/v1/valuations/{doc['valuation_id']}/verify").json()["identical"]
    loan = api("GET", "/v1/loans/API-1").json()
    assert loan["latest_valuation"]["valuation_id"] == doc["valuation_id"]

    # PATCH changes the principal; the next valuation says what changed
    patched = api("PATCH", "/v1/loans/API-1", json={"principal_cny": "2400000.00"})
    assert patched.json()["principal_cny"] == "2400000.00"
    second = api("POST", "/v1/loans/API-1/valuations", json={"as_of": WORLD_AS_OF}).json()
    assert Decimal(second["ltv"]) == 2 * Decimal(doc["ltv"]) or abs(
        Decimal(second["ltv"]) - 2 * Decimal(doc["ltv"])
    ) <= Decimal("0.0001")
    assert second["changes"]["previous_valuation_id"] == doc["valuation_id"]
    closed = api("DELETE", "/v1/loans/API-1")
    assert closed.json()["state"] == "closed"


def test_the_cli_gives_the_same_document(api, world, agri, monkeypatch):
    monkeypatch.setenv("AGRI_DATABASE_URL", engine_url(world))
    api("POST", "/v1/loans", json=_loan("API-CLI-1"))
    via_api = api("POST", "/v1/loans/API-CLI-1/valuations", json={"as_of": WORLD_AS_OF}).json()
    result = agri("valuate", "API-CLI-1", "--as-of", WORLD_AS_OF, "--json")
    assert result.exit_code == 0, result.output
    via_cli = json.loads(result.output)
    assert via_cli["valuation_id"] != via_api["valuation_id"]
    for key in ("items", "collateral_value_cny", "eligible_value_cny", "ltv", "status"):
        assert via_cli[key] == via_api[key]
    verified = agri("valuations", "verify", via_cli["valuation_id"])
    assert verified.exit_code == 0 and "identical" in verified.output


def test_roles_and_branches(api, world):
    assert api("POST", "/v1/loans", json=_loan("API-BR-1")).status_code == 201
    # another branch's officer sees none of it and cannot act on it
    assert "API-BR-1" not in [x["loan_id"] for x in api("GET", "/v1/loans", "stranger").json()]
    _problem(api("GET", "/v1/loans/API-BR-1", "stranger"), 404, "API-BR-1")
    _problem(api("POST", "/v1/loans/API-BR-1/valuations", "stranger"), 404)
    _problem(api("PATCH", "/v1/loans/API-BR-1", "stranger", json={"principal_cny": "1"}), 404)
    _problem(api("POST", "/v1/loans", "stranger", json=_loan("API-BR-2")), 422, "branch")
    # the risk admin sees every branch; the operator no loans at all
    assert "API-BR-1" in [x["loan_id"] for x in api("GET", "/v1/loans", "risk").json()]
    _problem(api("GET", "/v1/loans", "operator"), 403, "operator")
    # without a key, or with a wrong one
    _problem(api("GET", "/v1/loans", None), 401, "Bearer")
    assert api("GET", "/v1/loans", None).headers["www-authenticate"] == "Bearer"
    bad = {"Authorization": "Bearer agk_000000000000_nope"}
    _problem(TestClient(create_app(world)).get("/v1/loans", headers=bad), 401, "unknown")
    # prices: only risk admins import
    table = (SAMPLE_TILES.parent / "collateral" / "defaults" / "policy-2020.yaml").read_bytes()
    yaml_type = {"content-type": "application/yaml"}
    _problem(api("POST", "/v1/prices", "officer", content=table, headers=yaml_type), 403)
    assert (
        api("POST", "/v1/prices", "risk", content=table, headers=yaml_type).json()["imported"]
        is False
    )  # the same version and content is already there
    _problem(
        api(
            "POST",
            "/v1/prices",
            "risk",
            content=table.replace(b'"0.60"', b'"0.65"', 1),
            headers=yaml_type,
        ),
        409,
        "never edited",
    )


def test_errors_name_the_field_and_change_nothing(api, world):
    loans_before, valuations_before = _count(world, loans_table), _count(world, valuations)
    _problem(
        api("POST", "/v1/loans", json=_loan("API-E-1", principal_cny="lots")), 422, "principal_cny"
    )
    _problem(
        api("POST", "/v1/loans", json=_loan("API-E-1", parcel_ids=["NOPE"])),
        422,
        "parcel_ids.0",
        "NOPE",
    )
    bad_herd = [{"farm_id": "FARM-SOW", "categories": ["unicorn"]}]
    _problem(api("POST", "/v1/loans", json=_loan("API-E-1", herds=bad_herd)), 422, "herds.0")
    _problem(api("POST", "/v1/loans", json=_loan("bad id!")), 422, "loan_id")
    _problem(
        api("POST", "/v1/loans", content=b"{", headers={"content-type": "application/json"}), 422
    )
    _problem(api("POST", "/v1/loans/NOPE/valuations"), 404, "NOPE")
    _problem(api("GET", "/v1/valuations/NOPE"), 404)
    _problem(api("GET", "/v1/parcels/NOPE"), 404)
    _problem(api("GET", "/v1/farms/NOPE/headcount"), 404)
    _problem(api("GET", "/v1/animals/156999999999999/track"), 404)
    _problem(api("GET", "/v1/parcels?bbox=118,25,117,26"), 422, "bbox")
    _problem(api("GET", "/v1/parcels?limit=0"), 422, "limit")
    assert (_count(world, loans_table), _count(world, valuations)) == (
        loans_before,
        valuations_before,
    )
    assert api("POST", "/v1/loans", json=_loan("API-E-2")).status_code == 201
    _problem(api("POST", "/v1/loans", json=_loan("API-E-2")), 409, "exists")
    _problem(
        api("POST", "/v1/loans/API-E-2/valuations", json={"as_of": "2024-06-30"}), 422, "as_of"
    )
    _problem(
        api("POST", "/v1/loans/API-E-2/valuations", json={"as_of": "2019-01-01T00:00:00Z"}),
        422,
        "no price table in force",
    )
    assert _count(world, valuations) == valuations_before


def test_parcels_farms_animals_and_alerts(api, world):
    page = api("GET", "/v1/parcels?kind=forest&limit=5").json()
    assert page["type"] == "FeatureCollection" and page["numberReturned"] == 5
    assert page["numberMatched"] == 15 and page["next_offset"] == 5
    assert all(f["properties"]["kind"] == "forest" for f in page["features"])
    rest = api("GET", "/v1/parcels?kind=forest&limit=5&offset=10").json()
    assert rest["numberReturned"] == 5 and rest["next_offset"] is None
    chosen = api("GET", "/v1/parcels?ids=F-08,T-04,NOPE").json()
    assert sorted(f["id"] for f in chosen["features"]) == ["F-08", "T-04"]
    owned = api("GET", "/v1/parcels?owner=Wang Hui").json()
    assert {f["id"] for f in owned["features"]} == {"F-01", "T-04", "F-08", "F-10", "F-13"}
    # a box around F-08 only
    f08 = api("GET", "/v1/parcels/F-08").json()
    xs = [p[0] for p in f08["geometry"]["coordinates"][0]]
    ys = [p[1] for p in f08["geometry"]["coordinates"][0]]
    boxed = api("GET", f"/v1/parcels?bbox={min(xs)},{min(ys)},{max(xs)},{max(ys)}").json()
    assert "F-08" in {f["id"] for f in boxed["features"]} and boxed["numberMatched"] < 31

    profile = api("GET", f"/v1/parcels/F-08/profile?as_of={WORLD_AS_OF.replace('+', '%2B')}")
    assert profile.json()["events"][0]["state"] == "open"
    assert profile.json()["events"][0]["detection_delay_days"] >= 0
    # the stored health says how many clear images back it, as the profile does
    sampling = profile.json()["sampling"]
    assert f08["properties"]["clear_dates_60d"] == sampling["clear_dates"] >= 1
    assert f08["properties"]["largest_gap_days"] == sampling["largest_gap_days"]
    assert profile.json()["suspected"] == [] and f08["properties"]["suspected"] is None
    png = api("GET", "/v1/parcels/T-05/profile.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    chinese = api("GET", "/v1/parcels/T-05/profile.png", headers={"Accept-Language": "zh-CN"})
    assert chinese.headers["content-language"] == "zh-CN" and chinese.content != png.content

    farms = api("GET", "/v1/farms").json()
    assert {f["id"] for f in farms["features"]} == {"FARM-SOW", "FARM-FAT", "FARM-CATTLE"}
    at = WORLD_AS_OF.replace("+", "%2B")
    count = api("GET", f"/v1/farms/FARM-SOW/headcount?at={at}").json()
    assert count["categories"]["breeding_sow"]["verified"] == 177
    tag = "156100000000010"
    track = api("GET", f"/v1/animals/{tag}/track?since=2024-12-01T00:00:00Z&until={at}").json()
    assert len(track["points"]) == 1 and track["points"][0]["observed_at"] == WORLD_AS_OF.replace(
        "12:00", "10:00"
    )

    api("POST", "/v1/loans", json=_loan("API-AL-1", parcel_ids=["F-08"], herds=[]))
    alerts = api("GET", "/v1/alerts?loan_id=API-AL-1").json()
    assert [a["subject"] for a in alerts] == ["F-08"] and alerts[0]["source"] == "parcel"
    # a sow with a fever now: the farm filter shows its livestock alert and nothing else
    now = datetime.now(UTC) - timedelta(minutes=5)
    hot = Reading(tag_id="156100000000020", observed_at=now, temperature_c=41.2)
    with world.begin() as conn:
        bio_store.write_batch(
            conn, [bio_store.reading_row(hot, "FARM-SOW", "GW-SOW-1", now, None)], []
        )
    # reading decides nothing; the rules run where the ingester's writer runs them
    fevers = lambda: [a for a in api("GET", "/v1/alerts?farm_id=FARM-SOW").json()]  # noqa: E731
    assert ("fever", "156100000000020") not in {(a["kind"], a["subject"]) for a in fevers()}
    rules.evaluate_farm(world, "FARM-SOW", datetime.now(UTC), timedelta(minutes=30))
    farm_alerts = fevers()
    assert {a["source"] for a in farm_alerts} == {"livestock"}
    assert ("fever", "156100000000020") in {(a["kind"], a["subject"]) for a in farm_alerts}
    _problem(api("GET", "/v1/alerts?loan_id=API-AL-1", "stranger"), 404)


def test_a_key_past_its_rate_gets_429_and_other_keys_do_not(world):
    client = TestClient(create_app(world, None, RateLimiter(per_s=0.5, burst=3)))
    busy = {"Authorization": f"Bearer {auth.create_key(world, 'risk_admin', None)}"}
    calm = {"Authorization": f"Bearer {auth.create_key(world, 'risk_admin', None)}"}
    codes = [client.get("/v1/prices", headers=busy).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    refused = client.get("/v1/prices", headers=busy)
    _problem(refused, 429, "too many requests")
    assert int(refused.headers["retry-after"]) >= 1
    assert client.get("/v1/prices", headers=calm).status_code == 200


def test_every_write_is_in_the_audit_log(api, world):
    def rows():
        with world.connect() as c:
            return [dict(r._mapping) for r in c.execute(select(audit_log).order_by(audit_log.c.id))]

    before = len(rows())
    assert api("POST", "/v1/loans", json=_loan("API-AUD-1")).status_code == 201
    valued = api("POST", "/v1/loans/API-AUD-1/valuations", json={"as_of": WORLD_AS_OF}).json()
    api("PATCH", "/v1/loans/API-AUD-1", json={"principal_cny": "1.00"})
    api("PATCH", "/v1/loans/API-AUD-1", "stranger", json={"principal_cny": "2.00"})  # refused
    api("GET", "/v1/loans/API-AUD-1")  # a read: not audited
    new = rows()[before:]
    assert [(r["method"], r["path"], r["status"]) for r in new] == [
        ("POST", "/v1/loans", 201),
        ("POST", "/v1/loans/API-AUD-1/valuations", 201),
        ("PATCH", "/v1/loans/API-AUD-1", 200),
        ("PATCH", "/v1/loans/API-AUD-1", 404),
    ]
    assert new[0]["subject"] == "API-AUD-1" and new[1]["subject"] == valued["valuation_id"]
    assert {r["branch"] for r in new} == {"ANXI-01", "XIAMEN-02"}
    assert all(r["key_id"] and r["role"] == "loan_officer" and r["at"] for r in new)


# --- property-based: any request the OpenAPI document allows, never a 500 -----------


def test_no_request_the_openapi_document_allows_gets_a_500(tmp_path):
    """Every operation, requests generated from its OpenAPI schema (schemathesis), as a
    risk admin: never a 500. A throwaway database, so generated writes touch nothing else."""
    from remote_sensing import store as rs_store
    from remote_sensing.parcels import read_parcel_file

    engine = make_engine(f"sqlite:///{tmp_path / 'fuzz.db'}")
    upgrade(engine)
    rs_store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    seed_livestock(engine)
    for path in prices.default_tables():
        prices.import_file(engine, path)
    loans.create_loan(engine, loans.LoanIn.model_validate(_loan("FUZZ-1")))
    key = auth.create_key(engine, "risk_admin", None)
    unlimited = RateLimiter(per_s=1e9, burst=10**9)  # the fuzzer, not the limiter, is tested
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(engine, None, unlimited))
    from schemathesis.specs.openapi.checks import response_schema_conformance

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    seen = {}

    for operation in operations:

        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy())
        def no_500(case):
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (case.method, case.path, response.text[:500])
            # what came back is what /openapi.json says comes back (success and problems)
            case.validate_response(response, checks=[response_schema_conformance])

        no_500()
    assert seen.get(200, 0) + seen.get(201, 0) > 0 and seen.get(422, 0) > 0, seen


def test_every_operation_says_what_it_returns(world):
    """Each operation's success response has a schema in /openapi.json (a pydantic model),
    or is an image or a PDF; errors are documented as application/problem+json."""
    document = TestClient(create_app(world)).get("/openapi.json").json()
    undescribed = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            ok = next(v for k, v in operation["responses"].items() if k.startswith("2"))
            content = ok.get("content", {})
            if "image/png" in content or "application/pdf" in content:
                continue
            schema = content.get("application/json", {}).get("schema", {})
            bare = schema.get("type") == "object" and "properties" not in schema
            if not schema or bare:  # a bare object says nothing of what comes back
                undescribed.append(f"{method.upper()} {path}")
    assert undescribed == []
    assert len(document["paths"]) >= 25
    problem = document["paths"]["/v1/loans/{loan_id}"]["get"]["responses"]["404"]
    assert "application/problem+json" in problem["content"]


def test_a_double_pledge_is_a_409_naming_the_loan(api, world):
    assert api("POST", "/v1/loans", json=_loan("API-DP-1")).status_code == 201
    body = _problem(
        api("POST", "/v1/loans", json=_loan("API-DP-2", herds=[])), 409, "'F-03'", "API-DP-1"
    )
    assert body["loan_id"] == "API-DP-1"
    api("POST", "/v1/loans", json=_loan("API-DP-3", parcel_ids=["T-01"], herds=[]))
    _problem(
        api(
            "PATCH",
            "/v1/loans/API-DP-3",
            json={"herds": [{"farm_id": "FARM-SOW", "categories": ["breeding_sow"]}]},
        ),
        409,
        "FARM-SOW",
        "API-DP-1",
    )
    assert api("GET", "/v1/loans/API-DP-3").json()["herds"] == []
    assert api("GET", "/v1/loans/API-DP-2").status_code == 404


def test_request_bodies_refuse_fields_they_do_not_name(api, world):
    """Every JSON request model forbids undeclared fields, and the 422 names the field."""
    document = TestClient(create_app(world)).get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    models_in = set()
    for methods in document["paths"].values():
        for operation in methods.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            ref = (body or {}).get("schema", {}).get("$ref") or ""
            if not ref:  # anyOf [model, null] for an optional body
                refs = [s.get("$ref") for s in (body or {}).get("schema", {}).get("anyOf", [])]
                ref = next((r for r in refs if r), "")
            if ref:
                models_in.add(ref.rsplit("/", 1)[1])
    assert {"LoanIn", "LoanPatch", "SubscriptionIn", "ValueRequest"} <= models_in
    open_models = [m for m in models_in if schemas[m].get("additionalProperties") is not False]
    assert open_models == []
    body = _problem(api("POST", "/v1/loans", json={**_loan("API-EX-1"), "colour": "red"}), 422)
    assert "colour" in json.dumps(body)


@pytest.mark.parametrize(
    ("error", "status", "member"),
    [
        (errors.NotFound("loan 'X' does not exist"), 404, None),
        (errors.Conflict("loan 'X' exists"), 409, None),
        (pledges.DoublePledge("parcel 'F-03' is already pledged", "LN-1"), 409, "loan_id"),
        (errors.Invalid("bbox", "four numbers"), 422, "errors"),
        (claims.ClaimRefused("not polygonal"), 422, "code"),
        (PlotError("not polygonal"), 422, "code"),
        (ValuationError("no tea_stage row"), 422, None),
        (prices.TableError(["row 3: no value"]), 422, "errors"),
        (prices.VersionExists(["version exists"]), 409, None),
    ],
)
def test_each_error_kind_answers_with_its_status_and_shape(world, error, status, member):
    """One table (collateral/api/problems.py) turns every domain error into its problem."""
    app = create_app(world)

    @app.get("/raise")
    def _raise() -> None:
        raise error

    response = TestClient(app).get("/raise")
    assert response.status_code == status
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and str(error).split(":")[0][:12] in json.dumps(body)
    if member is not None:
        assert member in body, body
