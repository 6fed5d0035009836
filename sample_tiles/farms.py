"""Regenerate the sample livestock farms: farms.geojson and animals.csv, byte for byte.

    python sample_tiles/farms.py [OUT_DIR]   (default: the folder of this script)

Three farms just outside the sample imagery area near Anxi: a breeding-sow farm, a
fattening-pig farm and a dairy-and-beef cattle farm, 600 animals in all. Tag ids are
ISO 11784/11785 with country code 156 (China). Parities, lactations and birth dates are
drawn to fit each category (a sow's first litter at about one year, a cow's first calving
at about two, fattening pigs sold at about six months).
"""

import csv
import json
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from bioassets.registry import ANIMAL_COLUMNS

SEED = 20240501
REFERENCE_DAY = date(2024, 12, 31)
FARMS = [
    # farm_id, name, owner, (lon, lat) south-west corner, width and height in degrees
    ("FARM-SOW", "Longmen breeding-sow farm", "Chen Wei", (118.2205, 25.0380), 0.0030, 0.0022),
    ("FARM-FAT", "Hutou fattening-pig farm", "Lin Fang", (118.2260, 25.0420), 0.0034, 0.0020),
    ("FARM-CATTLE", "Xiping dairy and beef cattle", "Huang Min", (118.215, 25.03), 0.006, 0.0045),
]
HERDS = {
    "FARM-SOW": [("breeding_sow", 180)],
    "FARM-FAT": [("fattening_pig", 300)],
    "FARM-CATTLE": [("dairy_cow", 80), ("beef_cattle", 40)],
}


def geofence(lon: float, lat: float, width: float, height: float) -> dict:
    east, north = lon + width, lat + height
    ring = [(lon, lat), (east, lat), (east, north), (lon, north), (lon, lat)]
    return {"type": "Polygon", "coordinates": [[[round(x, 6), round(y, 6)] for x, y in ring]]}


def animal_rows(rng: np.random.Generator) -> list[dict]:
    rows, serial = [], 1
    for farm_id, herd in HERDS.items():
        for category, count in herd:
            for _ in range(count):
                tag_id = f"156{100000000000 + serial:012d}"
                serial += 1
                row = {"tag_id": tag_id, "farm_id": farm_id, "parity": "", "lactation": ""}
                if category == "breeding_sow":
                    parity = int(rng.integers(0, 9))
                    age = 240 + parity * 150 + int(rng.integers(0, 90))
                    row.update(species="pig", sex="female", parity=str(parity))
                elif category == "fattening_pig":
                    age = int(rng.integers(60, 180))
                    row.update(species="pig", sex=str(rng.choice(["female", "castrated"])))
                elif category == "dairy_cow":
                    lactation = int(rng.integers(1, 7))
                    age = 700 + (lactation - 1) * 400 + int(rng.integers(0, 200))
                    row.update(species="cattle", sex="female", lactation=str(lactation))
                else:
                    age = int(rng.integers(240, 700))
                    row.update(species="cattle", sex=str(rng.choice(["male", "female"])))
                row["category"] = category
                row["birth_date"] = (REFERENCE_DAY - timedelta(days=age)).isoformat()
                rows.append(row)
    return rows


def main(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    features = [
        {
            "type": "Feature",
            "properties": {"farm_id": fid, "name": name, "owner": owner},
            "geometry": geofence(*corner, w, h),
        }
        for fid, name, owner, corner, w, h in FARMS
    ]
    (out / "farms.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features}, indent=1) + "\n"
    )
    columns = list(ANIMAL_COLUMNS)
    with open(out / "animals.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in animal_rows(rng):
            writer.writerow({k: row[k] for k in columns})


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
