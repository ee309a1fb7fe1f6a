"""The one entry point Dagster loads (`dg dev`, `dg launch`, the gRPC code server, workspace.yaml): the
definitions themselves are built in `pipeline.orchestration.definitions`."""

from pipeline.orchestration.definitions import defs

__all__ = ["defs"]
