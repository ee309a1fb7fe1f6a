"""The Dagster wing: definitions, assets, checks, sensors, schedules, resources, partitions, pools and the
instance. Only this package and `pipeline.cli` import Dagster; the domain packages stay Dagster-free, so they
test without it (pipeline_tests/orchestration/test_wing.py)."""
