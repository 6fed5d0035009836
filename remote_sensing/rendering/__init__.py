"""Pictures of the record: scene overlays and a profile's chart."""
