"""Typed, validated configuration: node, storage, de-identification, pixels, routing, destinations."""
