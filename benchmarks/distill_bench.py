"""TinyBERT-style distillation benchmark: a MiniLM-L6 teacher on rotten-tomatoes -> a 4 x 312 student.

    nice -n 10 .venv/bin/python benchmarks/distill_bench.py --teacher TEACHER_FOLDER [--max-train 4000]

TEACHER_FOLDER is a fine-tuned classifier (``deploytool train --model minilm --data rotten-tomatoes``).
Writes benchmarks/results/distill_bench.json: teacher and student test accuracy, parameter counts,
wall-clock of the distillation (``deploytool.train.distill``) and of the evaluations, the schedule.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--data", default="rotten-tomatoes")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=312)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--ffn", type=int, default=1200)
    ap.add_argument("--max-train", type=int, default=4000)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--dev-examples", type=int, default=300, help="Dev examples evaluated inside distill.")
    ap.add_argument("--test-examples", type=int, default=None, help="Test examples (default: all 1,281).")
    ap.add_argument("--importance-examples", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None, help="Where the student goes (default: a temp folder).")
    ap.add_argument("-o", "--output", "--out", dest="out", type=Path, default=ROOT / "results" / "distill_bench.json")
    args = ap.parse_args(argv)
    run = stamp()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch

    from deploytool.onnx_io import atomic_write
    from deploytool.train.batching import load_data
    from deploytool.train.checkpoint import load_classifier, load_tokenizer, read_meta
    from deploytool.train.config import DataConfig
    from deploytool.train.distill import DistillConfig, count_parameters, distill
    from deploytool.train.evaluate import evaluate_torch

    t_all = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="distill_bench."))
    dc = DataConfig(data=args.data, max_length=args.max_length, max_train=args.max_train, max_eval=args.dev_examples)
    dc_test = DataConfig(data=args.data, max_length=args.max_length, max_eval=args.test_examples)
    cfg = DistillConfig(teacher=args.teacher, output=work / "student", data=dc, layers=args.layers,
                        hidden=args.hidden, heads=args.heads, ffn=args.ffn, epochs=args.epochs, lr=args.lr,
                        batch_size=args.batch_size, threads=args.threads,
                        importance_examples=args.importance_examples)
    r = distill(cfg)

    torch.set_num_threads(args.threads)
    ds = load_data(dc_test)
    tok = load_tokenizer(args.teacher)
    t0 = time.perf_counter()
    teacher = load_classifier(args.teacher, num_labels=ds.num_labels)
    teacher_test = evaluate_torch(teacher, tok, ds, "test", dc_test)
    teacher_eval_s = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    student = load_classifier(work / "student", num_labels=ds.num_labels)
    student_test = evaluate_torch(student, tok, ds, "test", dc_test)
    student_eval_s = round(time.perf_counter() - t0, 2)

    res = {
        "benchmark": "distill_bench",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at end",
        "threads": args.threads,
        "teacher": str(args.teacher),
        "teacher_training": {k: read_meta(args.teacher).get(k) for k in ("train_examples", "epochs", "lr", "seconds")},
        "dataset": r["dataset"],
        "teacher_shape": r["teacher_shape"], "student_shape": r["student_shape"], "layer_map": r["layer_map"],
        "parameters": {"teacher": count_parameters(teacher), "student": count_parameters(student),
                       "ratio": round(count_parameters(student) / count_parameters(teacher), 4)},
        "test": {"teacher": teacher_test, "student": student_test,
                 "student_of_teacher_pct": round(100 * student_test["accuracy"] / teacher_test["accuracy"], 2)},
        "dev": {"teacher": r["teacher_dev"], "student": r["dev"]},
        "distill_seconds": r["seconds"], "distill_train_seconds": r["train_seconds"],
        "eval_seconds": {"teacher_test": teacher_eval_s, "student_test": student_eval_s},
        "schedule": {"init": r["init"], "importance": r["importance"], "train_examples": r["train_examples"],
                     "epochs": r["epochs"], "intermediate_epochs": r["intermediate_epochs"], "lr": r["lr"],
                     "batch_size": r["batch_size"], "max_length": r["max_length"], "temperature": r["temperature"],
                     "loss_weights": r["loss_weights"], "attention_loss": r["attention_loss"]},
        "training": r["stages"],
        "notes": r["notes"] + ["short CPU schedule on a shared 2-core machine; accuracy is not converged"],
        "total_seconds": round(time.perf_counter() - t_all, 2),
    }
    res["run"] = stamp(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(res, f, indent=2, default=str)
    print(json.dumps({k: res[k] for k in ("parameters", "distill_seconds")} |
                     {"teacher_test": teacher_test["accuracy"], "student_test": student_test["accuracy"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
