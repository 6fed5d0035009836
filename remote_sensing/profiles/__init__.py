"""Crop profiles: the NDVI story of each parcel (pure analysis in ``profiles``,
disturbances, the stored state a new date advances, its storage and updates)."""
