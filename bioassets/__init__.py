"""Ear-tag readings and life events over MQTT: the live animal registry."""
