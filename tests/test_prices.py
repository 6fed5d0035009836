"""Price and policy tables: YAML and CSV, validation, regions, versions in force; the CLI."""

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from collateral import auth, prices
from collateral.prices import TableError, Where
from collateral.tables import api_keys

CSV_TABLE = """# kind: prices
# version: anxi-2024
# effective_from: 2024-01-01
# illustrative: false
section,region,key,band_min,band_max,value
tea_leaf_price_cny_per_kg,*,spring,,,41.5
tea_leaf_price_cny_per_kg,*,summer,,,12
tea_leaf_price_cny_per_kg,*,autumn,,,30
tea_leaf_price_cny_per_kg,county:Anxi,spring,,,55
tea_leaf_price_cny_per_kg,"bbox:118.0,25.0,118.5,25.5",spring,,,48
tea_yield_kg_per_ha_yr,*,*,,,7000
tea_season_share,*,spring,,,0.4
tea_season_share,*,summer,,,0.3
tea_season_share,*,autumn,,,0.3
liveweight_cny_per_kg,*,fattening_pig,0,80,18
liveweight_cny_per_kg,*,fattening_pig,80,,16
"""


def test_csv_tables_and_regional_rows():
    table = prices.parse_table_text(CSV_TABLE, "anxi.csv")
    assert (table["kind"], table["version"], table["illustrative"]) == (
        "prices",
        "anxi-2024",
        False,
    )
    spring = lambda where: prices.value(table, "tea_leaf_price_cny_per_kg", "spring", where)  # noqa: E731
    assert spring(Where()) == Decimal("41.5")  # the default row applies anywhere
    assert spring(Where(lon=118.2, lat=25.1)) == Decimal("48")  # inside the box
    assert spring(Where(county="Anxi", lon=118.2, lat=25.1)) == Decimal("55")  # county first
    assert spring(Where(county="Hua'an", lon=119.0, lat=25.1)) == Decimal("41.5")
    assert prices.value(table, "tea_yield_kg_per_ha_yr", "Tieguanyin") == 7000  # key "*"
    pig = lambda kg: prices.value(table, "liveweight_cny_per_kg", "fattening_pig", band=kg)  # noqa: E731
    assert (pig(79.9), pig(80), pig(130)) == (18, 16, 16)
    with pytest.raises(LookupError, match="no timber_stumpage_cny_per_m3 row"):
        prices.value(table, "timber_stumpage_cny_per_m3", "chinese_fir")


def test_bad_tables_list_every_problem():
    bad = CSV_TABLE.replace("0.3\n", "0.2\n", 1).replace(",,,12", ",,,-12")
    bad = bad.replace("county:Anxi", "province Fujian") + "no_such_section,*,x,,,1\n"
    with pytest.raises(TableError) as caught:
        prices.parse_table_text(bad, "bad.csv")
    problems = " | ".join(caught.value.problems)
    assert "row 2: value -12 is out of range" in problems
    assert "row 4: region 'province Fujian'" in problems
    assert "row 12: section 'no_such_section'" in problems
    with pytest.raises(TableError, match="summing to 1"):
        prices.parse_table_text(CSV_TABLE.replace("0.3\n", "0.2\n", 1), "shares.csv")
    with pytest.raises(TableError, match="not valid YAML"):
        prices.parse_table_text("kind: [", "x.yaml")
    with pytest.raises(TableError, match="effective_from"):
        prices.parse_table_text(CSV_TABLE.replace("2024-01-01", "soon"), "x.csv")


def test_versions_are_immutable_and_the_one_in_force_is_chosen_by_date(engine):
    default = prices.read_table_file(prices.DEFAULTS_DIR / "prices-2020.yaml")
    newer = prices.parse_table_text(CSV_TABLE, "anxi.csv")
    assert prices.import_table(engine, default, "default") is True
    assert prices.import_table(engine, newer, "anxi.csv") is True
    assert prices.import_table(engine, newer, "anxi.csv") is False  # same content: no-op
    changed = prices.parse_table_text(CSV_TABLE.replace("41.5", "42"), "anxi.csv")
    with pytest.raises(prices.VersionExists, match="never edited"):
        prices.import_table(engine, changed, "anxi.csv")
    assert prices.table_in_force(engine, "prices", date(2019, 12, 31)) is None
    assert prices.table_in_force(engine, "prices", date(2023, 6, 1))["version"] == "default-2020"
    assert prices.table_in_force(engine, "prices", date(2024, 1, 1))["version"] == "anxi-2024"
    assert prices.table_in_force(engine, "policy", date(2024, 1, 1)) is None


def test_prices_and_keys_from_the_command_line(agri, sqlite_env, tmp_path):
    result = agri("prices", "import", "--defaults")
    assert result.exit_code == 0 and "imported prices default-2020" in result.output
    assert "already present" in agri("prices", "import", "--defaults").output
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV_TABLE.replace(",,,12", ",,,twelve"))
    result = agri("prices", "import", str(bad))
    assert result.exit_code == 1 and "row 2: value 'twelve' is not a number" in result.output
    listed = agri("prices", "list", "--json")
    assert {(r["kind"], r["version"]) for r in __import__("json").loads(listed.output)} == {
        ("prices", "default-2020"),
        ("policy", "default-2020"),
        ("carbon", "carbon-default-2020"),
        ("solar", "solar-default-2020"),
    }

    key = agri("keys", "create", "--role", "loan_officer", "--branch", "ANXI-01").output.strip()
    assert key.startswith("agk_")
    from collateral.cli.context import App
    from collateral.settings import load_settings

    engine = App(load_settings()).engine
    with engine.connect() as c:
        (row,) = c.execute(select(api_keys)).all()
    assert key.split("_", 2)[2] not in str(tuple(row))  # only the hash is stored
    assert auth.authenticate(engine, key).branch == "ANXI-01"
    assert auth.authenticate(engine, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    result = agri("keys", "create", "--role", "loan_officer")
    assert result.exit_code != 0 and "needs --branch" in result.output


def test_verified_keys_are_trusted_briefly_and_wrong_keys_always_looked_up(engine):
    from sqlalchemy import delete

    key = auth.create_key(engine, "risk_admin", None)
    cache = auth.KeyCache(ttl_s=60)
    assert cache.principal(engine, key).role == "risk_admin"
    with engine.begin() as c:
        c.execute(delete(api_keys))  # the key is gone from the database
    assert cache.principal(engine, key).role == "risk_admin"  # within its ttl
    assert auth.KeyCache(ttl_s=60).principal(engine, key) is None  # a fresh lookup
    expired = auth.KeyCache(ttl_s=0)
    assert expired.principal(engine, key) is None
    assert cache.principal(engine, "agk_000000000000_guess") is None


def test_the_api_names_every_kind_of_table():
    from typing import get_args

    from collateral.api.models import TableKind

    assert set(get_args(TableKind)) == set(prices.SECTIONS)
