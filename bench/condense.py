"""Dataset condensation on the CIFAR-10 subset: each method with and without FYI against random selection.

Data: ``../shared/data/cifar10`` (4,660 lossless train images, 932 test images). For every
IPC and method (``dc``, ``dsa``, ``dm``, ``dcc``), with FYI off and/or on, the script distils
from each method's official initialization (``--init official``: noise for DC, real images for
the others; ``--init real`` for the grids below, which predate it), evaluates the set with the
standard protocol (``--eval-runs`` fresh ConvNets trained on it for ``--eval-epochs`` E, DSA
augmentation for the methods that distil with DSA) under each ``--eval-schedule`` (``official``:
``evaluate_synset``'s E + 1 epochs with lr x0.1 and a fresh optimizer after epoch E // 2 + 1;
``halfway``: E epochs, x0.1 at half-time with the momentum kept, the schedule before), and
evaluates random real images at the same IPC under the same protocol (with real
initialization, the same images the method starts from). It prints mean test accuracy with
the Student-t 95% interval, whether the method beats random selection beyond both intervals,
whether the run is a "shortened protocol" (fewer iterations or evaluation epochs than the
published budget, ``curate.condense.budgets``), and the wall time per outer iteration (the
mean over iterations after the first, which pays one-time setup), also divided by the time of
a plain forward pass over the same number of real images measured in the same run
(``x fwd``), which makes runs on a loaded, shared CPU comparable.

Anchor (the reference implementation, VICO-UoE/DatasetCondensation, measured on this subset
and this CPU; ConvNet-128, instance norm, 300-epoch evaluation x 3): DM at IPC 10 goes from
34.9 +- 0.6% (real init) to 42.4 +- 0.9% after 100 iterations at 5.0 s per iteration; DC at
IPC 1 takes 11.7 s per iteration; random selection gives 32.4 +- 2.1% (IPC 10) and 15.7 +- 1.0%
(IPC 1).

Commands (each prints a markdown table):

- DM anchor:
  ``python bench/condense.py --methods dm --ipc 10 --fyi off --iterations 100 --eval-runs 3 --eval-epochs 300``
- old against new evaluation schedule on the same sets:
  ``python bench/condense.py --methods dm --ipc 10 --fyi off --iterations 20 --eval-runs 3 --eval-epochs 300
  --eval-schedule halfway official --threads 1``
- DC timing:  ``python bench/condense.py --methods dc dsa dcc --ipc 1 --fyi off --timing 3`` (add ``--chunk 0``
  to pass whole batches through the networks, for comparisons)
- full table (CPU-sized gradient matching: narrower network, real batch 64):
  ``python bench/condense.py --methods dc dsa dm dcc --ipc 1 10 --fyi both --iterations 100 --width 64
  --batch-real 64 --eval-runs 3 --eval-epochs 300`` (add ``--gm-iterations 10`` on a CPU: one gradient-matching
  iteration at IPC 10 takes about a minute there)
- a published setting on a GPU (DM at IPC 10: the paper's 20,000 iterations and 1000-epoch evaluation):
  ``python bench/condense.py --methods dm --ipc 10 --fyi off --iterations 20000 --eval-runs 5 --eval-epochs 1000``
  (``--data DIR`` where ``../shared/data`` is not beside the checkout)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from curate.condense import distill, evaluate, random_selection
from curate.condense.budgets import shortfall
from curate.learn.device import resolve_device
from curate.models import create_model
from curate.workspace import write_json

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
EVAL_DSA = {"dc": False, "dsa": True, "dm": True, "dcc": False}
GRADIENT_MATCHING = {"dc", "dsa", "dcc"}
WHOLE_BATCHES = 1 << 30  # a chunk larger than any batch


def load(data: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    return np.load(data / split / "images.npy"), np.load(data / split / "labels.npy")


def fmt(result: dict) -> str:
    ci = result["ci95"]
    return f"{100 * result['mean']:.1f} +- {100 * ci:.1f}" if ci is not None else f"{100 * result['mean']:.1f} (1 run)"


def beats(method: dict, random: dict) -> str:
    if method["ci95"] is None or random["ci95"] is None:
        return "n/a (1 run)"
    return "yes" if method["mean"] - method["ci95"] > random["mean"] + random["ci95"] else "no"


def forward_seconds(n: int, width: int, device: str, *, repeats: int = 1) -> float:
    """Best-of wall time of a plain no-grad forward pass of a fresh ConvNet over ``n`` images in chunks of 256
    (contiguous layout) on ``device``: the load-independent yardstick the per-iteration times are divided by."""
    net = create_model("convnet", num_classes=10, weights=None, seed=0, width=width).to(device)
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if device != "cpu" else lambda: None
    best = float("inf")
    with torch.no_grad():
        net(x[:256])
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            for chunk in x.split(256):
                net(chunk)
            sync()
            best = min(best, time.perf_counter() - start)
    return best


def protocol(method: str, iterations: int, eval_epochs: int | None, dsa: bool) -> str:
    """The run against the method's published budget: "shortened protocol: ..." or "paper budget"."""
    return shortfall(method, iterations=iterations, eval_epochs=eval_epochs, eval_dsa=dsa) or "paper budget"


def seconds_per_iteration(history: list[dict]) -> float:
    seconds = [row["seconds"] for row in history]
    return float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["dc", "dsa", "dm", "dcc"])
    parser.add_argument("--ipc", nargs="+", type=int, default=[1, 10])
    parser.add_argument("--fyi", choices=["off", "on", "both"], default="both")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--gm-iterations", type=int, default=0, metavar="N",
                        help="outer iterations of dc, dsa and dcc at IPC > 1, whose iterations each run 10 matching "
                             "steps and 450 inner epochs (0: --iterations)")
    parser.add_argument("--width", type=int, default=128, help="ConvNet width for distillation and evaluation")
    parser.add_argument("--batch-real", type=int, default=256, help="real images per class per matching step")
    parser.add_argument("--eval-runs", type=int, default=3)
    parser.add_argument("--eval-epochs", type=int, default=300, help="the protocol's E (the official schedule "
                                                                      "trains E + 1 epochs)")
    parser.add_argument("--eval-schedule", nargs="+", choices=["official", "halfway"], default=["official"],
                        help="evaluation lr schedules, each run on the same distilled sets (halfway: before the "
                             "official schedule was followed)")
    parser.add_argument("--init", choices=["official", "real", "noise"], default="official",
                        help="where the synthetic images start (official: each method's published default)")
    parser.add_argument("--timing", type=int, default=0, metavar="N",
                        help="only time N outer iterations per method (no evaluation)")
    parser.add_argument("--chunk", type=int, metavar="N",
                        help="images per forward/backward pass in distillation and evaluation (default: the "
                             "library's, 16 on CPU; 0: whole batches, for before/after comparisons)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA,
                        help="folder with train/ and test/ images.npy and labels.npy (default: ../shared/data/cifar10)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the rows, with every run's accuracy, to FILE (rewritten after each row)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    images, labels = load(args.data, "train")
    test_images, test_labels = load(args.data, "test")
    net = {"width": args.width}
    chunk = WHOLE_BATCHES if args.chunk == 0 else args.chunk
    fyis = {"off": [False], "on": [True], "both": [False, True]}[args.fyi]
    protocol_options = dict(model_config=net, runs=args.eval_runs, epochs=args.eval_epochs, seed=args.seed,
                            progress=False, chunk=chunk)
    init = None if args.init == "official" else args.init
    device = resolve_device("auto")
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, torch threads {torch.get_num_threads()}"
    print(f"# condense bench on {where}: {len(images)} train / {len(test_images)} test images, ConvNet-{args.width}, "
          f"batch_real {args.batch_real}, chunk {args.chunk if args.chunk is not None else 'default'}")
    n_real = 10 * args.batch_real
    print(f"'x fwd': seconds per iteration divided by a plain forward pass over {n_real} images timed just before and "
          f"after that run (the reference: DM 5.0 s = {5.0 / 4.2:.2f}x its 4.2 s forward pass; DC at IPC 1 11.7 s = "
          f"{11.7 / 4.2:.2f}x)")

    def timed_distill(**kwargs):
        """The distilled set and the forward-pass yardstick around it (mean of before and after)."""
        before = forward_seconds(n_real, args.width, device)
        result = distill(images, labels, model_config=net, seed=args.seed, progress=False, init=init,
                         batch_real=args.batch_real, chunk=chunk, **kwargs)
        return result, (before + forward_seconds(n_real, args.width, device)) / 2

    if args.timing:
        print("\n| method | IPC | FYI | s / outer iteration | x fwd |\n|---|---|---|---|---|")
        for ipc in args.ipc:
            for method in args.methods:
                for fyi in fyis:
                    result, yardstick = timed_distill(method=method, ipc=ipc, iterations=args.timing, fyi=fyi)
                    per_iter = seconds_per_iteration(result.history)
                    ratio = per_iter / yardstick
                    print(f"| {method} | {ipc} | {'on' if fyi else 'off'} | {per_iter:.3g} | {ratio:.2f} |", flush=True)
        return

    gm = f" ({args.gm_iterations} for dc, dsa, dcc at IPC > 1)" if args.gm_iterations else ""
    print(f"\n{args.iterations} outer iterations{gm}, init {args.init}; evaluation: {args.eval_runs} runs x "
          f"E = {args.eval_epochs} epochs, mean +- 95% CI (%)\n")
    print("| method | IPC | FYI | init | iterations | eval schedule | accuracy | random | beats random | protocol | "
          "s / iteration | x fwd | distil s | eval s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows: list[dict] = []
    for ipc in args.ipc:
        chosen = random_selection(images, labels, ipc=ipc, seed=args.seed, model_config=net)
        randoms: dict[tuple[bool, str], dict] = {}
        for method in args.methods:
            dsa = EVAL_DSA.get(method, False)
            for schedule in args.eval_schedule:
                if (dsa, schedule) not in randoms:
                    randoms[dsa, schedule] = evaluate(chosen, test_images, test_labels, dsa=dsa, lr_schedule=schedule,
                                                      **protocol_options)
                    print(f"| random{' (DSA eval)' if dsa else ''} | {ipc} | - | real | - | {schedule} | "
                          f"{fmt(randoms[dsa, schedule])} | - | - | - | - | - | - | - |", flush=True)
            iterations = args.gm_iterations if args.gm_iterations and ipc > 1 and method in GRADIENT_MATCHING \
                else args.iterations
            budget = protocol(method, iterations, args.eval_epochs, dsa)
            for fyi in fyis:
                result, yardstick = timed_distill(method=method, ipc=ipc, iterations=iterations, fyi=fyi)
                distil_s = sum(row["seconds"] for row in result.history)
                per_iter = seconds_per_iteration(result.history)
                for schedule in args.eval_schedule:
                    start = time.perf_counter()
                    score = evaluate(result, test_images, test_labels, lr_schedule=schedule, **protocol_options)
                    eval_s = time.perf_counter() - start
                    random = randoms[dsa, schedule]
                    print(f"| {method} | {ipc} | {'on' if fyi else 'off'} | {result.provenance['init']} | "
                          f"{iterations} | {schedule} | {fmt(score)} | {fmt(random)} | {beats(score, random)} | "
                          f"{budget} | {per_iter:.3g} | {per_iter / yardstick:.2f} | {distil_s:.0f} | {eval_s:.0f} |",
                          flush=True)
                    rows.append(dict(method=method, ipc=ipc, fyi=fyi, init=result.provenance["init"],
                                     iterations=iterations, eval_schedule=schedule, accuracy=score, random=random,
                                     protocol=budget, seconds_per_iteration=per_iter, x_fwd=per_iter / yardstick))
                    if args.json:
                        write_json(args.json, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
