"""Rooftop solar plants as collateral: the plants registry, inverter telemetry on the
farm gateway protocol (``solar/v1``, SunSpec names), daily energy from the lifetime
counter, what each plant should have made (pvlib, and its neighbours), and the flags a
loan officer acts on."""
