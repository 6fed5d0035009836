"""The parcels as the imagery job needs them: ids and outlines in one CRS.

Not a GeoDataFrame on purpose: the job needs ids, outlines, their reprojection and their
bounds, all of which shapely and pyproj do on arrays, and importing geopandas (pandas)
was 0.22-0.29 s of every ~3 s sync. Reprojection is geopandas' own recipe (every
coordinate through one pyproj transformer, x and y in that order), so the outlines are
the same to the last bit.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer

from remote_sensing.parcels import WGS84


@dataclass(frozen=True, eq=False)
class ParcelSet:
    parcel_id: np.ndarray  # str, (n,)
    geometry: np.ndarray  # shapely geometries, (n,)
    crs: CRS

    @classmethod
    def of(cls, parcel_ids: list[str], geometries: Any, crs: Any = WGS84) -> "ParcelSet":
        """Parcels from ids and outlines (any sequence of shapely geometries) in ``crs``."""
        geometry = np.empty(len(parcel_ids), dtype=object)
        geometry[:] = list(geometries)
        return cls(np.asarray(parcel_ids, dtype=str), geometry, CRS.from_user_input(crs))

    @classmethod
    def from_frame(cls, frame: Any) -> "ParcelSet":
        """Parcels from a GeoDataFrame with a ``parcel_id`` column (a parcel file read by
        geopandas, a test's frame)."""
        return cls.of(list(frame["parcel_id"]), frame.geometry.values, frame.crs)

    def __len__(self) -> int:
        return len(self.parcel_id)

    @property
    def empty(self) -> bool:
        return len(self) == 0

    @property
    def bounds(self) -> np.ndarray:
        """(n, 4): minx, miny, maxx, maxy of each outline."""
        return shapely.bounds(self.geometry)

    @property
    def total_bounds(self) -> np.ndarray:
        return shapely.total_bounds(self.geometry)

    def take(self, which: np.ndarray) -> "ParcelSet":
        """The parcels a boolean mask or an index array picks, in that order."""
        return ParcelSet(self.parcel_id[which], self.geometry[which], self.crs)

    def to_crs(self, crs: Any) -> "ParcelSet":
        """The same parcels in ``crs``."""
        crs = CRS.from_user_input(crs)
        if crs == self.crs:
            return self
        transformer = Transformer.from_crs(self.crs, crs, always_xy=True)

        def project(xy: np.ndarray) -> np.ndarray:
            return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

        return ParcelSet(self.parcel_id, shapely.transform(self.geometry, project), crs)
