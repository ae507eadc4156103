"""kill -9 sweep of the CLI: how a run survives being killed at random moments of every step.

Run: ``python bench/reliability.py [recipes/demo.yaml] [--chains 20] [--seed 0] [--workdir DIR]``.

First an uninterrupted reference run records each step's wall time and output fingerprints. Then each
*chain* starts a fresh run directory and, for every step in order, starts ``curate run``, waits for the
step's start line, sleeps a random share (0 to 1.2x) of the step's reference time and sends SIGKILL; the
next start resumes. After the last step the chain runs once more unkilled and is checked: every step
complete, every output fingerprint equal to the reference's (bit-identical outputs), no temporary file of
an interrupted write left, and (when the recipe mirrors to FiftyOne) the dataset holding each sample once.
``--chains N`` gives N kill points per step. Prints one row per step: kill points, how many landed
inside the step (the rest hit a later step or the run's end), and failures.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import yaml

CURATE = [sys.executable, "-m", "curate.cli"]


def run(recipe: Path, workdir: Path, *, kill_in: str | None = None, delay: float = 0.0) -> str | None:
    """One ``curate run``; with ``kill_in``, SIGKILL it ``delay`` s after that step starts. Returns the
    step that was running when killed (None: not killed)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen([*CURATE, "run", str(recipe), "--workdir", str(workdir)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    running, deadline, seen = None, None, []
    while proc.poll() is None:
        while not lines.empty():
            seen.append(line := lines.get().strip())
            if line.startswith("▶ "):
                running = line[2:].split()[0]
                if running == kill_in and deadline is None:
                    deadline = time.monotonic() + delay
        if deadline is not None and time.monotonic() >= deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return running
        time.sleep(0.01)
    if kill_in is None and proc.returncode != 0:
        time.sleep(0.2)
        raise SystemExit(f"the unkilled run failed (exit {proc.returncode}):\n" + "\n".join(seen[-20:]))
    return None


def fingerprints(run_dir: Path, steps: list[str]) -> dict[str, dict[str, str] | None]:
    out = {}
    for step in steps:
        manifest = run_dir / step / "step.json"
        out[step] = ({k: v["fingerprint"] for k, v in json.loads(manifest.read_text())["outputs"].items()}
                     if manifest.is_file() else None)
    return out


def fiftyone_problem(run_dir: Path) -> str | None:
    """Duplicate or orphan samples in the run's FiftyOne dataset (None when fine or not mirrored)."""
    record = run_dir / "fiftyone.json"
    if not record.is_file():
        return None
    from curate.fo.database import configure, connect

    configure()
    fo = connect()
    dataset = fo.load_dataset(json.loads(record.read_text())["dataset"])
    paths = dataset.values("filepath")
    return None if len(paths) == len(set(paths)) else f"{len(paths) - len(set(paths))} duplicate samples"


def table(steps: list[str], aimed: Counter, landed: Counter, failures: list[str], chains: int,
          started: float) -> None:
    """The results so far (printed after every chain, so a long sweep stopped early still reports)."""
    print("\n| step | kill points | inside the step | outputs equal to an unkilled run |")
    print("|---|---|---|---|")
    for step in steps:
        bad = sum(f"{step}:" in f for f in failures)
        print(f"| `{step}` | {aimed[step]} | {landed[step]} | {chains - bad}/{chains} |")
    print(f"\n{sum(aimed.values())} kills, {sum(landed.values())} inside their step, {len(failures)} failures; "
          f"{time.monotonic() - started:.0f} s in all", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/demo.yaml", type=Path)
    parser.add_argument("--chains", type=int, default=20, help="kill points per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="curate-kill-"))).resolve()
    os.environ["CURATE_HOME"] = str(work / "curate-home")  # its own database: the user's stays untouched
    recipe = args.recipe.resolve()
    name = yaml.safe_load(recipe.read_text())["name"]
    steps = [s["id"] for s in yaml.safe_load(recipe.read_text())["steps"]]

    started = time.monotonic()
    run(recipe, work / "reference")
    reference_dir = work / "reference" / name
    reference = fingerprints(reference_dir, steps)
    seconds = {s: json.loads((reference_dir / s / "step.json").read_text())["seconds"] for s in steps}
    print(f"reference run: {time.monotonic() - started:.0f} s; {args.chains} chains, seed {args.seed}", flush=True)

    aimed, landed, failures = Counter(), Counter(), []
    for chain in range(args.chains):
        workdir = work / f"chain{chain:03d}"
        for step in steps:
            killed_in = run(recipe, workdir, kill_in=step, delay=rng.uniform(0, 1.2 * seconds[step]))
            aimed[step] += 1
            landed[step] += killed_in == step
        run(recipe, workdir)
        run_dir = workdir / name
        got = fingerprints(run_dir, steps)
        failures += [f"chain {chain}: {s}: outputs differ from the reference" for s in steps if got[s] != reference[s]]
        leftovers = [p for p in run_dir.rglob("*.tmp*") if ".cache" not in p.parts]
        failures += [f"chain {chain}: temporary file left: {p.relative_to(run_dir)}" for p in leftovers]
        problem = fiftyone_problem(run_dir)
        failures += [f"chain {chain}: {problem}"] if problem else []
        print(f"chain {chain + 1}/{args.chains} done ({time.monotonic() - started:.0f} s)", flush=True)
        table(steps, aimed, landed, failures, chain + 1, started)

    for failure in failures:
        print("FAIL", failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
