#!/usr/bin/env python3
"""Submit the generation or training job to a Ray cluster: checks the job's flags first, handles token auth,
waits for the cluster's job agent, ships this checkout with cluster/runtime_env.yaml, and follows the logs.

    python cluster/submit.py generate --address http://HEAD:8265 -- prompts.parquet --out s3://bucket/run
    python cluster/submit.py train --address http://HEAD:8265 -- --data s3://bucket/data --out s3://bucket/ckpt --workers 4 --gpu

Exit status: the job's (0 succeeded, 1 failed), 2 for bad flags or options, 3 when the cluster is unreachable.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"generate": "jobs/generate.py", "train": "jobs/train.py"}
DEFAULT_RUNTIME_ENV = REPO / "cluster" / "runtime_env.yaml"
# Non-secret settings forwarded from the submitting shell when set: where S3 is, not who you are.
FORWARDED_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION")
SECRET_WORDS = {"SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "KEY", "PRIVATE"}
NO_AGENT = "No available agent"
AUTH_FAILED = ("Missing authentication token", "Unauthorized", "Invalid authentication token")


class SubmitError(Exception):
    """A problem worth one line and an exit code, not a traceback."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def entry_command(entry: str) -> Any:
    """The click command behind a `jobs/*.py` entry point: its module-level Typer `app`, the one that
    `python jobs/X.py` runs (loaded under another name, so the `__main__` block does not run)."""
    path = REPO / entry
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    spec = importlib.util.spec_from_file_location(f"llmgan_job_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # ImportError here: this client lacks the project's deps
    app = getattr(module, "app", None)
    if app is None:
        raise SubmitError(f"{entry}: no module-level Typer `app` to check the job's flags with")
    import typer

    return typer.main.get_command(app)


def job_flags(entry: str) -> set[str]:
    """Every option spelling the entry point accepts (e.g. --out, --expand, --no-expand)."""
    return {opt for p in entry_command(entry).params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("-")}


def check_job_args(entry: str, args: list[str]) -> None:
    """Parse the job's arguments with the job's own CLI, here, before anything reaches the cluster."""
    try:
        command = entry_command(entry)
    except ImportError as exc:  # a submit-only client without the project's deps: the cluster will check
        print(f"[submit] not checking job flags locally ({exc})", file=sys.stderr)
        return
    said = io.StringIO()  # a command that prints its own one-line usage error, then exits 2
    try:
        with contextlib.redirect_stderr(said):
            command.make_context(entry, list(args))
    except Exception as exc:  # click's (typer's vendored click's) usage errors; Exit(0) is --help
        if hasattr(exc, "format_message"):
            raise SubmitError(f"{entry}: {exc.format_message()}") from None
        if type(exc).__name__ != "Exit":
            raise
        if getattr(exc, "exit_code", 0) != 0:
            lines = [line.removeprefix("error: ") for line in said.getvalue().splitlines() if line.strip()]
            raise SubmitError(f"{entry}: {lines[-1] if lines else 'bad arguments'}") from None


def looks_secret(name: str) -> bool:
    """AWS_SECRET_ACCESS_KEY, RAY_AUTH_TOKEN, DB_PASSWORD... (but not TOKENIZERS_PARALLELISM)."""
    return bool(SECRET_WORDS & set(name.upper().split("_")))


def runtime_env(path: Path, forward: list[str]) -> dict[str, Any]:
    """The runtime env file plus the named variables' values from this shell (never secret-looking names)."""
    import yaml

    try:
        env = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SubmitError(f"--runtime-env: no such file {path}") from None
    if not isinstance(env, dict):
        raise SubmitError(f"--runtime-env: {path} is not a YAML mapping")
    env_vars = {str(k): str(v) for k, v in (env.get("env_vars") or {}).items()}
    for name in forward:
        if looks_secret(name):
            raise SubmitError(f"--env {name}: looks like a credential; the runtime env is visible in the dashboard, "
                              "give the nodes credentials instead (instance profile, Kubernetes Secret)")
    for name in (*FORWARDED_ENV, *forward):
        if os.environ.get(name):
            env_vars[name] = os.environ[name]
    if env_vars:
        env["env_vars"] = env_vars
    return env


def ray_env(token_file: str | None) -> dict[str, str]:
    """The environment for the `ray` CLI: token auth on whenever a token is at hand (Ray 2.5x clusters started
    with `ray start --head` reject job submissions without it)."""
    env = dict(os.environ)
    if token_file:
        if not Path(token_file).expanduser().is_file():
            raise SubmitError(f"--token-file: no such file {token_file}")
        env["RAY_AUTH_TOKEN_PATH"] = str(Path(token_file).expanduser())
    has_token = bool(env.get("RAY_AUTH_TOKEN") or env.get("RAY_AUTH_TOKEN_PATH")
                     or (Path.home() / ".ray" / "auth_token").is_file())
    if has_token and "RAY_AUTH_MODE" not in env:
        env["RAY_AUTH_MODE"] = "token"
    return env


def ray_cli() -> str:
    local = Path(sys.executable).with_name("ray")  # the Ray next to this Python (client and cluster must match)
    found = str(local) if local.exists() else shutil.which("ray")
    if not found:
        raise SubmitError("the `ray` command is not installed here: pip install 'ray[default]'")
    return found


def wait_for_cluster(ray: str, address: str, env: dict[str, str], timeout: float) -> None:
    """Until the job API answers (a freshly started head takes seconds)."""
    deadline, last = time.monotonic() + timeout, ""
    while True:
        result = subprocess.run([ray, "job", "list", "--address", address], env=env, capture_output=True, text=True)
        if result.returncode == 0:
            return
        last = (result.stderr or result.stdout).strip()
        if any(s in last for s in AUTH_FAILED):
            raise SubmitError(auth_hint(address), 3)
        if time.monotonic() > deadline:
            tail = last.splitlines()[-1] if last else "no answer"
            raise SubmitError(f"no Ray job API at {address} after {timeout:.0f}s ({tail})", 3)
        time.sleep(1)


def auth_hint(address: str) -> str:
    return (f"{address} requires a Ray auth token: put the cluster's token in ~/.ray/auth_token, or set "
            "RAY_AUTH_TOKEN / pass --token-file (on the head: `ray get-auth-token`)")


def submit(ray: str, command: list[str], env: dict[str, str], timeout: float) -> int:
    """Run `ray job submit`, streaming its output; retried while the head's job agent is still starting."""
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            sys.stdout.write(line)
            sys.stdout.flush()
        code = proc.wait()
        text = "".join(lines)
        if code != 0 and NO_AGENT in text and time.monotonic() < deadline:
            print("[submit] the job agent is not up yet; retrying", file=sys.stderr)
            time.sleep(2)
            continue
        if code != 0 and any(s in text for s in AUTH_FAILED):
            raise SubmitError(auth_hint(command[command.index("--address") + 1]), 3)
        return code


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        split = argv.index("--")
        ours, job_args = argv[:split], argv[split + 1:]
    else:
        ours, job_args = argv, []
    parser = argparse.ArgumentParser(
        prog="cluster/submit.py", description=__doc__.split("\n\n")[0],
        epilog="Everything after `--` goes to the job: see `python jobs/generate.py --help`.")
    parser.add_argument("job", choices=sorted(ENTRY_POINTS), help="which job to run")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265",
                        help="the cluster's dashboard/job API URL [env RAY_ADDRESS; default %(default)s]")
    parser.add_argument("--runtime-env", type=Path, default=DEFAULT_RUNTIME_ENV, help="runtime env YAML")
    parser.add_argument("--env", action="append", default=[], metavar="NAME",
                        help="also forward this variable from your shell (not for secrets); repeatable")
    parser.add_argument("--token-file", help="file holding the cluster's Ray auth token [default ~/.ray/auth_token]")
    parser.add_argument("--submission-id", help="a unique id for this submission [default: Ray picks one]")
    parser.add_argument("--no-wait", action="store_true", help="return once submitted; follow with `ray job logs -f`")
    parser.add_argument("--cluster-timeout", type=float, default=120.0,
                        help="seconds to wait for the cluster's job API and agent [default %(default)s]")
    parser.add_argument("--dry-run", action="store_true", help="check and print the `ray job submit` command only")
    return parser.parse_args(ours), job_args


def main(argv: list[str] | None = None) -> int:
    args, job_args = parse(sys.argv[1:] if argv is None else argv)
    try:
        entry = ENTRY_POINTS[args.job]
        if not (REPO / entry).is_file():
            raise SubmitError(f"{entry} is not in this checkout")
        check_job_args(entry, job_args)
        renv = runtime_env(args.runtime_env, args.env)
        ray = ray_cli()
        command = [ray, "job", "submit", "--address", args.address, "--runtime-env-json", json.dumps(renv)]
        if args.submission_id:
            command += ["--submission-id", args.submission_id]
        if args.no_wait:
            command.append("--no-wait")
        command += ["--", "python", entry, *job_args]
        if args.dry_run:
            print(shlex.join(command))
            return 0
        env = ray_env(args.token_file)
        wait_for_cluster(ray, args.address, env, args.cluster_timeout)
        return submit(ray, command, env, args.cluster_timeout)
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
