"""The farm gateway transport: how gateways on farms and the bank's ingesters talk over
MQTT, whatever the readings mean (ear tags today, inverters next). The domains plug their
payloads in; this package names no animal and no asset."""
