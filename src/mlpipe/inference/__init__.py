"""Batch inference: new data scored with registered or exported models through their pyfunc
flavor, only the rows that are new or changed since they were last scored (or all, when the model
changed), batch by batch, each batch recorded in the ledger as it is done.

- `ledger`: the database table (SQLAlchemy: SQLite by default, PostgreSQL for teams) that says,
  for each dataset, model and row key, from which content, by which version and when it was scored,
  and what the prediction was.
- `models`: what `inference.models` names (`prod`, `challenger`, `3`, `models:/...`,
  `model_export:vN`), resolved to one registry or artifact version each.
- `scorer`: one batch scored in one process, the models loaded once per process; rows a model
  refuses are found by splitting the batch, and the rest are scored.
- `plan`: the rows each model must score, against the ledger.
- `workers`: the batches, in the step's process or in parallel worker processes.
- `outputs`: the predictions (from the ledger), the rejected rows, the metrics, the log lines.
- `job`: one run, from the new data to its outputs, a ledger commit per batch.
"""
