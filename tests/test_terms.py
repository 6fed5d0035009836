"""A farm's and a forest owner's own records in Chinese: column names and values as
their software writes them (GB18030 CSV from Excel on Chinese Windows, UTF-8 with BOM),
imported the same as the English ones, and unknown terms still refused by name."""

import json

import geopandas as gpd
import pytest
from shapely.geometry import box

from agri_common import terms
from collateral.db import make_engine
from remote_sensing import store as rs_store
from tests.support.paths import SAMPLE_TILES

HERD_BOOK = (
    "耳标号,养殖场,畜种,类别,性别,出生日期,胎次,泌乳胎次\n"
    "156000000000011,FARM-SOW,猪,能繁母猪,母,2022/3/5,2,\n"
    "156000000000012,FARM-CATTLE,牛,奶牛,母,2021年1月9日,,3\n"
    "156000000000013,FARM-FAT,猪,育肥猪,阉,2025-06-01,,\n"
    "156000000000014,FARM-CATTLE,牛,肉牛,公,2023.7.1,,\n"
    "156000000000015,FARM-SOW,猪,能繁母猪,公,2022/3/5,1,\n"
    "156000000000016,FARM-SOW,猪,种猪,母,2022/3/5,1,\n"
)


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig", "utf-8"])
def test_a_herd_book_in_chinese_imports_like_an_english_one(tmp_path, sqlite_env, agri, encoding):
    assert agri("farms", "import", SAMPLE_TILES / "farms.geojson").exit_code == 0
    path = tmp_path / "herd-book.csv"
    path.write_bytes(HERD_BOOK.encode(encoding))
    result = agri("animals", "import", path)
    assert "imported 4 new" in result.stdout, result.stdout + result.stderr
    assert "line 6: a breeding_sow must be female" in result.stderr  # 公 is male
    assert "line 7: category '种猪' is not one of" in result.stderr  # unknown: named as written
    sow = json.loads(agri("animals", "show", "156000000000011", "--json").stdout)
    assert (sow["category"], sow["sex"], sow["birth_date"], sow["parity"]) == (
        "breeding_sow",
        "female",
        "2022-03-05",
        2,
    )
    cow = json.loads(agri("animals", "show", "156000000000012", "--json").stdout)
    assert (cow["species"], cow["category"], cow["birth_date"], cow["lactation"]) == (
        "cattle",
        "dairy_cow",
        "2021-01-09",
        3,
    )
    assert json.loads(agri("animals", "show", "156000000000013", "--json").stdout)["sex"] == (
        "castrated"
    )


def test_a_stand_list_in_chinese_imports_its_parcels(tmp_path, sqlite_env, agri):
    frame = gpd.GeoDataFrame(
        {
            "地块编号": ["Z-TEA", "Z-FIR"],
            "地类": ["茶园", "林地"],
            "户主": ["王辉", "林芳"],
            "品种": ["铁观音", None],
            "种植年份": [2009, None],
            "树种": [None, "杉木"],
            "龄组": [None, "近熟林"],
            "蓄积": [None, 153.0],
        },
        geometry=[box(118.20, 25.05, 118.202, 25.052), box(118.21, 25.05, 118.213, 25.053)],
        crs="EPSG:4326",
    )
    path = tmp_path / "stands.geojson"
    frame.to_file(path, driver="GeoJSON")
    result = agri("parcels", "import", path)
    assert result.exit_code == 0, result.stdout + result.stderr
    engine = make_engine(sqlite_env["AGRI_DATABASE_URL"])
    listed = rs_store.get_parcels(engine, ["Z-TEA", "Z-FIR"])
    engine.dispose()
    assert listed["Z-TEA"]["kind"] == "tea_garden" and listed["Z-TEA"]["owner"] == "王辉"
    assert listed["Z-FIR"]["kind"] == "forest"
    assert listed["Z-FIR"]["attributes"] == {
        "species_group": "chinese_fir",
        "age_class": "near_mature",
        "stand_volume_m3_per_ha": 153.0,
    }
    assert listed["Z-TEA"]["attributes"] == {"variety": "铁观音", "planted_year": 2009}


@pytest.mark.parametrize(
    ("text", "iso"),
    [("2021-03-05", "2021-03-05"), ("2021/3/5", "2021-03-05"), ("2021年3月5日", "2021-03-05")],
)
def test_dates_as_farm_records_write_them(text, iso):
    assert terms.parse_day(text).isoformat() == iso


@pytest.mark.parametrize("text", ["5/3/2021", "2021-13-01", "yesterday"])
def test_what_is_not_a_date_is_refused(text):
    with pytest.raises(ValueError):
        terms.parse_day(text)
