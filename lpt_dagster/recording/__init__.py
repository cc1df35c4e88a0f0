"""What an asset records beside its value: its MLflow child run (the tables it read and wrote, its
metrics and files) and the metadata a person reads in the Dagster UI. One function per kind of
value, in the module named like the asset module it serves, so that an asset body reads as its
inputs, one lpt_core call and its value.

The metric, artifact and metadata names here are the ones the tests, the docs and MLflow
searches rely on: renaming one is a change of interface, not a refactoring.
"""
