"""Optical imagery, from a catalogue's item to each parcel's statistics: catalogues and
their quirks, radiometry, band reads, scenes, STAC sync, HTTP assets, COGs, coverage
weights, zonal statistics, indices, and the imagery job with its Dask driver. The types
every part shares (a scene's metadata, a band's place, a scene that cannot be used) are
in ``scene_types``, at the bottom. Radar imagery gets a subpackage of its own beside this
one (``remote_sensing.radar``), feeding the same observations."""
