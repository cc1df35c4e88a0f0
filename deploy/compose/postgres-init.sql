-- Runs once, when the postgres volume is first created. Dagster gets the database named by
-- POSTGRES_DB; MLflow gets its own, because both keep a table called "runs".
CREATE DATABASE mlflow;
