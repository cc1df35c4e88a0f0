"""Dagster assets by domain: data, profiles, baselines, training, evaluation, quality, registry."""
