"""Satellite scenes to per-parcel NDVI observations and crop profiles."""
