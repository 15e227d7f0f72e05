"""Durable storage: the database (instances, deliveries, audit events) and the data folders."""
