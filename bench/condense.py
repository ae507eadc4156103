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

``--sre2l`` compares the methods that recover images from a teacher, at equal budget, under the
KD protocol (:func:`sre2l_main`): SRe2L and CDA recovered from the pretrained ResNet-20
(``--teacher``), random real images under KD and with their own labels (the same student
recipe), and DM under KD, for fresh ConvNet-3 and ResNet-20 students, with the wall time of
each recovered class block. Each IPC's SRe2L/CDA set is the first IPC indices of the largest
IPC's set (recovery blocks are pure functions of (block, seed): the same images as recovering
that IPC alone); ``--checkpoint-dir`` keeps finished blocks, so a killed bench resumes.

- CPU, shortened protocol (the README's table; IPC 10, one core; ``--batch-real`` is DM's real batch per class):
  ``nice -n 10 python bench/condense.py --sre2l --ipc 10 --iterations 100 --kd-epochs 20 --kd-batch 32
  --kd-lr 3e-3 --width 64 --dm-iterations 100 --batch-real 64 --eval-runs 3 --threads 1 --checkpoint-dir ckpt
  --json sre2l.json`` (a later ``--ipc 50`` with the same ``--checkpoint-dir`` reuses the 10 recovered IPC indices)
- GPU, the published recover budget (1,000 iterations, recover_cifar.sh) and student recipe (400 epochs,
  AdamW 1e-3, T 30, relabel_cifar.sh):
  ``python bench/condense.py --sre2l --ipc 10 50 --iterations 1000 --kd-epochs 400 --width 128
  --dm-iterations 20000 --eval-runs 5 --json sre2l-gpu.json``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from curate.condense import distill, evaluate, random_selection, summarize
from curate.condense.budgets import shortfall
from curate.config import to_dict
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


def prefix(synthetic, ipc: int):
    """The first ``ipc`` IPC indices of each class of a class-major set (what recovering ``ipc`` alone gives)."""
    from dataclasses import replace

    per = synthetic.provenance["ipc"]
    rows = torch.cat([torch.arange(c * per, c * per + ipc) for c in range(synthetic.num_classes)])
    return replace(synthetic, images=synthetic.images[rows], labels=synthetic.labels[rows],
                   provenance={**synthetic.provenance, "ipc": ipc})


def paired(a: dict, b: dict) -> dict:
    """Mean and 95% interval of the per-run differences a - b (runs share student seeds and views' seeds)."""
    return summarize([x - y for x, y in zip(a["runs"], b["runs"])])


SRE2L_SETS = ("cda", "sre2l", "random_kd", "random_kd_hard", "dm")


def sre2l_main(args: argparse.Namespace) -> None:
    """SRe2L vs CDA at equal budget, against random real images (KD and hard labels) and DM under KD."""
    from curate.condense.kd import KDRecipe, Views
    from curate.condense.teacher import resolve_teacher
    from curate.learn import predict_images

    images, labels = load(args.data, "train")
    test_images, test_labels = load(args.data, "test")
    teacher = create_model(args.teacher, num_classes=10, weights=args.teacher_weights or "default")
    teacher = resolve_teacher(teacher, num_classes=10)
    teacher_acc = float((predict_images(teacher, test_images, device="cpu").argmax(1) == test_labels).mean())
    epochs = dict(zip(args.ipc, args.kd_epochs * len(args.ipc) if len(args.kd_epochs) == 1 else args.kd_epochs))
    students = [(name, {"width": args.width} if name == "convnet" else {}) for name in args.students]
    where = f"CPU, torch threads {torch.get_num_threads()}" if resolve_device("auto") == "cpu" else \
        torch.cuda.get_device_name()
    print(f"# sre2l bench on {where}: {len(images)} train / {len(test_images)} test images; teacher {args.teacher} "
          f"({100 * teacher_acc:.1f}% on the test images); students {', '.join(args.students)} (ConvNet width "
          f"{args.width}); recovery {args.iterations} iterations (lr 0.25, r_bn 0.01, class block 10 = all classes); "
          f"KD: epochs {epochs} (by IPC), AdamW lr {args.kd_lr}, T {args.kd_temperature}, batch {args.kd_batch}, "
          f"{args.kd_crop} crop+flip+Mixup, relabel {args.relabel}; {args.eval_runs} runs; DM "
          f"{args.dm_iterations} iterations, real batch {args.batch_real}; sre2l recovery views: "
          f"{'roll only (recover_cifar.py)' if args.recover_views == 'cifar' else 'crop 0.08-1 + flip + roll'}")
    report: dict = {"args": vars(args), "teacher_accuracy": teacher_acc, "recovery": {}, "rows": []}

    top = max(args.ipc)
    recovered = {}
    for method in [m for m in ("sre2l", "cda") if m in args.sets]:  # recover only what is evaluated
        start = time.perf_counter()
        whole = args.recover_views == "cifar" and method == "sre2l"  # CDA's curriculum is a crop schedule
        views = dict(min_crop=1.0, flip=False) if whole else {}
        ckpt = args.checkpoint_dir / (method + ("-cifar" if whole else "")) if args.checkpoint_dir else None
        recovered[method] = distill(images, labels, method=method, ipc=top, iterations=args.iterations,
                                    teacher=teacher, seed=args.seed, progress=False, checkpoint_dir=ckpt, **views)
        blocks = [b["seconds"] for b in recovered[method].blocks]
        budget = shortfall(method, iterations=args.iterations, eval_epochs=None, eval_dsa=False) or "paper budget"
        report["recovery"][method] = {"blocks": recovered[method].blocks, "wall_seconds": time.perf_counter() - start,
                                      "protocol": budget}
        print(f"- {method}: {len(blocks)} class blocks (10 classes x 1 IPC index each) of {args.iterations} "
              f"iterations: {np.mean(blocks):.1f} s per block (min {min(blocks):.1f}, max {max(blocks):.1f}), "
              f"{np.mean(blocks) / args.iterations:.3f} s per iteration; {budget}", flush=True)

    header = "| IPC | student | set | protocol | accuracy % (95% CI) | runs |"
    print(f"\n{header}\n|---|---|---|---|---|---|")
    for ipc in args.ipc:
        dm = distill(images, labels, method="dm", ipc=ipc, iterations=args.dm_iterations, model_config={
            "width": args.width}, batch_real=args.batch_real, seed=args.seed, progress=False) \
            if "dm" in args.sets else None
        chosen = random_selection(images, labels, ipc=ipc, seed=args.seed)
        kd = KDRecipe(epochs=epochs[ipc], lr=args.kd_lr, temperature=args.kd_temperature, batch_size=args.kd_batch,
                      views=Views(crop=args.kd_crop))
        sets = [*[(m, prefix(recovered[m], ipc), "kd") for m in ("cda", "sre2l") if m in recovered],
                ("random", chosen, "kd"), ("random", chosen, "kd_hard"), ("dm", dm, "kd")]
        sets = [s for s in sets if (s[0] if s[0] != "random" else f"random_{s[2]}") in args.sets]
        for student, config in students:
            results = {}
            for name, synthetic, protocol in sets:
                soft = None
                if protocol == "kd" and args.relabel == "stored":
                    from curate.condense.relabel import record_set

                    soft = record_set(synthetic, teacher=teacher, kd=kd, seed=args.seed)
                start = time.perf_counter()
                result = evaluate(synthetic, test_images, test_labels, model=student, model_config=config,
                                  runs=args.eval_runs, protocol=protocol, teacher=teacher if protocol == "kd" else None,
                                  kd=kd, soft_labels=soft, seed=args.seed, progress=False)
                results[name, protocol] = result
                runs = ", ".join(f"{100 * r:.1f}" for r in result["runs"])
                print(f"| {ipc} | {student} | {name} | {protocol} | {fmt(result)} | {runs} |", flush=True)
                report["rows"].append(dict(ipc=ipc, student=student, set=name, protocol=protocol, accuracy=result,
                                           eval_seconds=time.perf_counter() - start, kd=to_dict(kd)))
                if args.json:
                    write_json(args.json, report)
            verdicts = sre2l_verdicts(results)
            report["rows"].append(dict(ipc=ipc, student=student, verdicts=verdicts))
            print(f"| {ipc} | {student} | verdicts | | {'; '.join(f'{k}: {v}' for k, v in verdicts.items())} | |",
                  flush=True)
            if args.json:
                write_json(args.json, report)


def sre2l_verdicts(results: dict) -> dict[str, str]:
    """cda vs sre2l (paired runs), and each against random real images with hard labels and under KD."""
    out = {}
    if ("cda", "kd") in results and ("sre2l", "kd") in results:
        diff = paired(results["cda", "kd"], results["sre2l", "kd"])
        beyond = diff["ci95"] is not None and diff["mean"] - diff["ci95"] > 0
        out["cda - sre2l (paired)"] = (f"{100 * diff['mean']:+.1f} +- {100 * (diff['ci95'] or 0):.1f} "
                                       f"({'beyond noise' if beyond else 'not beyond noise'})")
    for name in ("cda", "sre2l"):
        for base, label in ((("random", "kd_hard"), "random hard"), (("random", "kd"), "random KD")):
            if (name, "kd") in results and base in results:
                out[f"{name} > {label}"] = beats(results[name, "kd"], results[base])
    return out


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
    sre2l = parser.add_argument_group("--sre2l: recovery from a teacher under the KD protocol")
    sre2l.add_argument("--sre2l", action="store_true", help="compare sre2l and cda (--iterations each) with random "
                                                            "real images and DM under KD")
    sre2l.add_argument("--teacher", default="resnet20-cifar")
    sre2l.add_argument("--teacher-weights", help="weights file for --teacher (default: its bundled weights)")
    sre2l.add_argument("--students", nargs="+", default=["convnet", "resnet20-cifar"])
    sre2l.add_argument("--kd-epochs", nargs="+", type=int, default=[400], help="student epochs, one per --ipc or one "
                                                                               "for all (published: 400)")
    sre2l.add_argument("--kd-lr", type=float, default=1e-3, help="AdamW lr of the students (published: 1e-3)")
    sre2l.add_argument("--kd-temperature", type=float, default=30.0, help="KD temperature (published: 30)")
    sre2l.add_argument("--kd-batch", type=int, default=128)
    sre2l.add_argument("--kd-crop", choices=["pad", "resized"], default="pad",
                       help="student views: pad-4 crops (relabel_cifar.py, published for CIFAR) or random-resized "
                            "crops of 8-100%% of the area (ImageNet's FKD relabel; a departure on CIFAR)")
    sre2l.add_argument("--recover-views", choices=["crops", "cifar"], default="crops",
                       help="sre2l's views during recovery: random-resized crops of 8-100%% + flip + roll "
                            "(recover.sh, ImageNet) or the roll alone (recover_cifar.py: no crop, no flip)")
    sre2l.add_argument("--relabel", choices=["on_the_fly", "stored"], default="on_the_fly")
    sre2l.add_argument("--dm-iterations", type=int, default=100)
    sre2l.add_argument("--sets", nargs="+", default=list(SRE2L_SETS), choices=SRE2L_SETS,
                       help="which sets to evaluate (default: all; e.g. `cda sre2l` with more --eval-runs)")
    sre2l.add_argument("--checkpoint-dir", type=Path, help="keep finished recovery blocks here (a rerun resumes)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sre2l:
        sre2l_main(args)
        return

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
