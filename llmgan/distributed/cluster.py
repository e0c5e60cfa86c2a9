"""Joining or starting Ray, one way for generation and training, and keeping Ray's own chatter off the terminal:
the user sees our progress lines and one-line errors; Ray's messages stay in its session log files."""

from __future__ import annotations

import logging
import os
import sys

import ray


def connect_ray(address: str | None = None, *, num_cpus: int | None = None, normal_priority: bool = False,
                quiet: bool = False) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, set by `ray job submit`), else start a local Ray with
    `num_cpus` (default: all). A no-op when Ray is already initialised in this process.

    normal_priority: a local Ray's workers run at nice 0 instead of Ray's 15 (training: on a busy machine nice 15
    halved the speed against --local). quiet: Ray logs errors only, workers' output stays in the logs.

    Workers' output reaches the terminal only when joining a cluster (where it is the only copy a `ray job
    submit` user sees) and not quiet; a local Ray keeps it in its session logs.
    """
    if not ray.is_initialized():
        joining = bool(address or os.environ.get("RAY_ADDRESS"))
        kwargs: dict = {}
        if not joining:
            kwargs["num_cpus"] = num_cpus
            if normal_priority:
                kwargs["_system_config"] = {"worker_niceness": 0}
            # a local Ray warns that token auth is on (or off) unless RAY_AUTH_MODE is set: Ray's default, not news
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(address=address, logging_level=logging.ERROR if quiet else logging.WARNING,
                 log_to_driver=joining and not quiet,
                 include_dashboard=False, configure_logging=True, **kwargs)
    _consume_actor_args_warning()


_ACTOR_ARGS_WARNING_CONSUMED = False


def _consume_actor_args_warning() -> None:
    """Ray's core worker logs, once per process, an ERROR line to stderr when an actor that may restart gets
    constructor arguments from the object store (ray-project/ray#53727). Ray Data's actor pools always do
    (it puts its own map function there and holds the reference for the dataset's life, so the restart
    caveat does not bite): every generation job printed the line. Creating one such actor with stderr pointed
    at /dev/null uses up the once; the line is still written to the driver's log file. The actor asks for a
    resource no node has, so it never starts, and is killed at once."""
    global _ACTOR_ARGS_WARNING_CONSUMED
    if _ACTOR_ARGS_WARNING_CONSUMED:
        return
    _ACTOR_ARGS_WARNING_CONSUMED = True
    arg = ray.put(0)
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        actor = _Unscheduled.options(max_restarts=1, num_cpus=0, resources={"llmgan-never-scheduled": 1}).remote(arg)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    ray.kill(actor)


@ray.remote
class _Unscheduled:
    def __init__(self, arg: object) -> None:
        pass
