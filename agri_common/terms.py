"""The Chinese terms of farms' and forest owners' own records, as data.

A pig farm's herd book exported from its management software, a forestry station's
stand list or an installer's plant list names columns and values in Chinese
(耳标号, 性别 母/公, 能繁母猪; 地类 茶园, 树种 杉木; 装机容量, 并网日期).
The importers accept these besides the English terms: ``english_row`` maps a record's
column names and known values to the English ones, and ``read_records_text`` reads a
CSV the way Chinese spreadsheets save it (UTF-8 with or without BOM, else GB18030,
Excel's default on Chinese Windows). Unknown terms pass through unchanged, so the
importer's own checks still name them.
"""

import re
from datetime import date

COLUMNS = {
    # animals (bioassets.registry.ANIMAL_COLUMNS)
    "耳标号": "tag_id",
    "耳标": "tag_id",
    "电子耳标": "tag_id",
    "养殖场": "farm_id",
    "养殖场编号": "farm_id",
    "畜种": "species",
    "类别": "category",
    "性别": "sex",
    "出生日期": "birth_date",
    "胎次": "parity",
    "泌乳胎次": "lactation",
    # parcels (remote_sensing.parcels)
    "地块编号": "parcel_id",
    "编号": "parcel_id",
    "地类": "kind",
    "权属人": "owner",
    "户主": "owner",
    "品种": "variety",
    "种植年份": "planted_year",
    "树种": "species_group",
    "龄组": "age_class",
    "蓄积": "stand_volume_m3_per_ha",
    "县": "county",
    # rooftop solar plants (solar.plants.REQUIRED, OPTIONAL)
    "电站编号": "plant_id",
    "电站名称": "name",
    "纬度": "lat",
    "经度": "lon",
    "装机容量": "kwp",
    "装机容量(kWp)": "kwp",
    "组件容量": "kwp",
    "逆变器额定功率": "ac_kw",
    "逆变器功率(kW)": "ac_kw",
    "倾角": "tilt",
    "方位角": "azimuth",
    "投运日期": "commissioned",
    "并网日期": "grid_connected",
    "逆变器品牌": "make",
    "逆变器型号": "model",
    "逆变器序列号": "serial",
    "序列号": "serial",
    "电价方案": "tariff",
    "农户编号": "farm_id",
    # the grid company's settlement statement (solar.settlements)
    "结算月份": "month",
    "结算电量(kWh)": "kwh",
    "上网电量(kWh)": "kwh",
    "结算金额(元)": "paid_cny",
}
VALUES = {
    "sex": {
        "母": "female",
        "雌": "female",
        "公": "male",
        "雄": "male",
        "阉": "castrated",
        "去势": "castrated",
    },
    "species": {"牛": "cattle", "猪": "pig"},
    "category": {
        "奶牛": "dairy_cow",
        "肉牛": "beef_cattle",
        "能繁母猪": "breeding_sow",
        "母猪": "breeding_sow",
        "育肥猪": "fattening_pig",
        "肥猪": "fattening_pig",
    },
    "kind": {"茶园": "tea_garden", "茶山": "tea_garden", "林地": "forest", "山林": "forest"},
    "species_group": {
        "杉木": "chinese_fir",
        "马尾松": "masson_pine",
        "桉树": "eucalyptus",
        "阔叶树": "broadleaf",
        "常绿阔叶树": "broadleaf_evergreen",
    },
    "age_class": {
        "幼龄林": "young",
        "中龄林": "middle",
        "近熟林": "near_mature",
        "成熟林": "mature",
        "过熟林": "overmature",
    },
}
_DAY = re.compile(r"^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\s*$")


def english_row(row: dict) -> dict:
    """A record with its Chinese column names and known Chinese values in English."""
    out = {}
    for name, value in row.items():
        key = COLUMNS.get(str(name).strip(), name) if name is not None else name
        if isinstance(value, str) and key in VALUES:
            value = VALUES[key].get(value.strip(), value)
        out[key] = value
    return out


def english_columns(names: list[str]) -> list[str]:
    return [COLUMNS.get(n.strip(), n) for n in names]


def parse_day(text: str) -> date:
    """2021-03-05, 2021/3/5, 2021.3.5 or 2021年3月5日; ValueError otherwise."""
    match = _DAY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD, YYYY/M/D or YYYY年M月D日)")
    return date(*(int(g) for g in match.groups()))


def read_records_text(data: bytes) -> str:
    """A CSV's text as a Chinese spreadsheet may have saved it."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")
