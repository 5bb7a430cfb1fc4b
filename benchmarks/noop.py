"""The entry point of the floor measurement: a project run by `mlflow run` that does nothing."""
