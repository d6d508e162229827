"""Schedules: the watch and nightly flows as Prefect deployments.

Two ways to run them unattended (the README shows both):

* ``moments serve``: this process serves both flows on the schedules in the config
  (:func:`serve_flows`). One machine, nothing else to run.
* ``prefect.yaml``: deploy them to a Prefect server with a ``process`` work pool and
  start workers (``prefect worker start --pool moments``) on as many machines as
  needed; Prefect hands each scheduled run to one worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moments.config import MomentsConfig, Schedule, load_config


def prefect_schedule(schedule: Schedule, *, interval_override: Any = None) -> Any:
    """A Prefect schedule from a config schedule (cron in its time zone, or an interval)."""
    from prefect.schedules import Cron, Interval

    if interval_override is not None:
        return Interval(interval_override, timezone=schedule.timezone)
    if schedule.cron is not None:
        return Cron(schedule.cron, timezone=schedule.timezone)
    assert schedule.interval is not None
    return Interval(schedule.interval, timezone=schedule.timezone)


def deployments(config_path: Path, config: MomentsConfig | None = None, store_url: str | None = None) -> list[Any]:
    """The two deployments, with the config's schedules and one run at a time each."""
    from flows.flows import nightly, watch
    from flows.state import watch_interval

    config = config or load_config(config_path)
    parameters = {"config_path": str(config_path), "store_url": store_url}
    # One schedule drives every brand at the shortest interval; each tick polls only the brands due.
    watch_schedule = (
        prefect_schedule(config.schedules.watch)
        if config.schedules.watch.cron is not None
        else prefect_schedule(config.schedules.watch, interval_override=watch_interval(config))
    )
    return [
        watch.to_deployment(
            name="watch",
            schedule=watch_schedule,
            parameters=parameters,
            concurrency_limit=1,
            description="Poll fast sources, re-score what changed, flag and notify.",
            tags=["moments"],
        ),
        nightly.to_deployment(
            name="nightly",
            schedule=prefect_schedule(config.schedules.nightly),
            parameters=parameters,
            concurrency_limit=1,
            description="Every source, recovery, bursts over the day, the daily report.",
            tags=["moments"],
        ),
    ]


def serve_flows(config_path: Path, store_url: str | None = None) -> None:
    """Serve both flows on their schedules until interrupted."""
    from prefect import serve

    serve(*deployments(config_path, store_url=store_url))
