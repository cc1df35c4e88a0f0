"""Thin Dagster orchestration of lpt_core: assets, checks, resources, jobs, schedule and sensor."""
