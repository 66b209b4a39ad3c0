"""Prefect workers of this service: `workers.inprocess.InProcessWorker`."""
