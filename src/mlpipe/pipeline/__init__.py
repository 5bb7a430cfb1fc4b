"""The pipeline: step contracts, the pipeline definition, planner, cache, executors, orchestrator."""
