"""Training benchmark: MiniLM-L6 teacher on rotten-tomatoes, DynaBERT, ternary/binary QAT, ONNX parity.

    nice -n 10 .venv/bin/python benchmarks/train_bench.py [--schedule demo|smoke|full] [--threads 2]

Writes benchmarks/results/train_bench_<schedule>.json and .md (through deploytool.train.report).
Targets (issue 5): DynaBERT (width 0.5, depth 0.75) >= 98% of the teacher's test accuracy, ternary
QAT >= 97%, binary >= 96%; exported + sliced / packed ONNX accuracy within 0.2 points of PyTorch.

Schedules (examples = first N of the seeded shuffled training split, 10,246 in all):
- smoke: a few dozen examples; checks the pipeline runs end to end (accuracy meaningless).
- demo: a teacher on 3,000 examples x 2 epochs, 640 examples per DynaBERT stage, 3,840 per QAT run
  (one epoch each; QAT dev with 1,280 / 2,560 examples: ternary 74.0 / 77.0, binary 67.0 / 76.0), no attention-score loss term (DynaBERT's own code has none): in 20-40 steps it
  dominated the loss (MSE 2.3-2.7 vs logits 0.4-0.6). Measured on 300 dev examples (+-2.6 points
  noise) with the same teacher: DynaBERT (0.5, 0.75) 77.0 without vs 73.3 with it; binary QAT 67.0
  vs 60.7. QAT with row-wise scales (packed the same way): post-training ternary 75.7% dev row-wise
  vs 57.7% layer-wise; QAT lr 2e-4 (ternary 74.0 vs 72.3 at 5e-5, 70.3 at 1e-5). Run with 1 torch
  thread on the shared 2-core machine (2 threads were 5x slower per step at load ~10); the numbers
  in results/train_bench_demo.* are from this schedule.
- standard (issue 12; at most 60 minutes on 2 quiet cores): the teacher on the whole training split
  for 3 epochs (dev accuracy after each, to show the plateau), DynaBERT width then depth stage on the
  whole split (one epoch each, 3 sub-networks per step: the width stage's sandwich, the depth stage
  every depth at rotating widths), the whole grid w in {0.25, 0.5, 0.75, 1} x d in {0.5, 0.75, 1} on
  the whole 1,281-review test split, ternary and binary QAT on the whole split (int8 activations,
  TernaryBERT's 2-2-8).
  Targets (share of the teacher's test accuracy): (1, 0.5) >= 95%, (0.5, 0.5) >= 93%,
  (0.5, 0.75) >= 97%, ternary >= 98%, binary >= 97%.
- full: for bigger machines (a GPU through accelerate, or many cores): 3 epochs on all data per
  stage, every sub-network every step, as in the DynaBERT / TernaryBERT papers.
"""

from __future__ import annotations

import argparse
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

SCHEDULES = {
    "smoke": dict(teacher_examples=64, teacher_epochs=1, teacher_lr=1e-4, importance_examples=32,
                  dyn_examples=32, width_epochs=1, depth_epochs=1, subnets_per_step=3, dyn_lr=5e-5,
                  qat_examples=32, qat_epochs=1, qat_lr=1e-4, dev_examples=64, test_examples=64, batch_size=16),
    "demo": dict(teacher_examples=3000, teacher_epochs=2, teacher_lr=1e-4, importance_examples=256,
                 dyn_examples=640, width_epochs=1, depth_epochs=1, subnets_per_step=3, dyn_lr=1e-4,
                 dyn_w_attention=0.0, qat_examples=3840, qat_epochs=1, qat_lr=2e-4, qat_granularity="row",
                 qat_w_attention=0.0, dev_examples=300, test_examples=None, batch_size=32),
    "standard": dict(teacher_examples=None, teacher_epochs=3, teacher_lr=5e-5, importance_examples=1024,
                     dyn_examples=None, width_epochs=1, depth_epochs=1, subnets_per_step=3, dyn_lr=1e-4,
                     dyn_w_attention=0.0, qat_examples=None, qat_epochs=1, qat_lr=2e-4, qat_granularity="row",
                     qat_w_attention=0.0, dev_examples=500, test_examples=None,
                     batch_size=32),
    "full": dict(teacher_examples=None, teacher_epochs=3, teacher_lr=5e-5, importance_examples=2048,
                 dyn_examples=None, width_epochs=3, depth_epochs=3, subnets_per_step=0, dyn_lr=2e-5,
                 qat_examples=None, qat_epochs=3, qat_lr=5e-5, dev_examples=None, test_examples=None,
                 batch_size=32),
}


STANDARD_TARGETS = {(1.0, 0.5): 95, (0.5, 0.5): 93, (0.5, 0.75): 97}
QAT_TARGETS = {"demo": {"ternary": 97, "binary": 96}, "standard": {"ternary": 98, "binary": 97}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schedule", choices=sorted(SCHEDULES), default="demo")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default="rotten-tomatoes")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="Checkpoints (default: a temp folder). A stage whose checkpoint and record are already "
                         "in the folder is not trained again (its recorded time is reused).")
    ap.add_argument("-o", "--output", "--out", dest="out", type=Path, default=ROOT / "results")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--no-tws", action="store_true",
                    help="Skip BinaryBERT's ternary weight splitting (binary from a half-width ternary model).")
    ap.add_argument("--note", action="append", default=[], help="A line added to the report's notes.")
    args = ap.parse_args(argv)
    run = stamp()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    log = logging.getLogger("train_bench")

    import json

    import torch

    from deploytool.train.batching import load_data
    from deploytool.train.checkpoint import load_classifier, load_tokenizer, read_meta
    from deploytool.train.config import DataConfig, DynaBertConfig, QATConfig, TrainConfig
    from deploytool.train.dynabert import train_dynabert
    from deploytool.train.evaluate import evaluate_onnx, evaluate_torch
    from deploytool.train.finetune import finetune
    from deploytool.train.qat import train_qat
    from deploytool.train.report import write_train_report

    s = SCHEDULES[args.schedule]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="train_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    load_start = os.getloadavg()
    torch.set_num_threads(args.threads)
    bs = s["batch_size"]
    reused = []

    def stage(name, fn):
        """Run a training stage, or reuse its checkpoint + record from an earlier run in the same workdir."""
        rec = work / f"{name}.result.json"
        if rec.exists() and (work / name).is_dir():
            reused.append(name)
            log.info("%s: reusing %s", name, work / name)
            return json.loads(rec.read_text())
        r = fn()
        rec.write_text(json.dumps(r, default=str))
        return r

    def data(n_train):
        return DataConfig(data=args.data, max_length=args.max_length, max_train=n_train, max_eval=s["dev_examples"])

    test_cfg = DataConfig(data=args.data, max_length=args.max_length, max_eval=s["test_examples"])
    ds = load_data(test_cfg)
    rows, onnx_rows, notes = [], [], []

    def test_acc(folder, width=1.0, depth=1.0):
        m = load_classifier(folder)
        act_bits = int((read_meta(folder).get("qat") or {}).get("act_bits") or 0)
        return evaluate_torch(m, load_tokenizer(folder), ds, "test", test_cfg, width=width, depth=depth,
                              act_bits=act_bits)

    log.info("teacher")
    tr = stage("teacher", lambda: finetune(TrainConfig(
        model=args.model, output=work / "teacher", data=data(s["teacher_examples"]), epochs=s["teacher_epochs"],
        lr=s["teacher_lr"], batch_size=bs, threads=args.threads, dev_each_epoch=args.schedule == "standard")))
    teacher_test = test_acc(work / "teacher")
    per_epoch = tr["training"].get("per_epoch") or []
    rows.append({"name": "teacher (MiniLM-L6 fine-tuned)", "accuracy": teacher_test["accuracy"],
                 "f1_macro": teacher_test["f1_macro"], "seconds": tr["training"]["seconds"],
                 "notes": f"{tr['train_examples']} examples x {s['teacher_epochs']} epoch(s)"
                          + (("; dev after each epoch: " + ", ".join(f"{e['dev_accuracy']:.1f}" for e in per_epoch))
                             if per_epoch else "")})

    log.info("dynabert")
    dr = stage("dynabert", lambda: train_dynabert(DynaBertConfig(
        teacher=work / "teacher", output=work / "dynabert", data=data(s["dyn_examples"]),
        width_epochs=s["width_epochs"], depth_epochs=s["depth_epochs"], subnets_per_step=s["subnets_per_step"],
        importance_examples=s["importance_examples"], lr=s["dyn_lr"], batch_size=bs,
        w_attention=s.get("dyn_w_attention", 0.0), threads=args.threads)))
    dyn_seconds = sum(st["seconds"] for st in dr["stages"].values())
    grid_test = []
    if args.schedule == "standard":
        cells = [(w, d) for w in (0.25, 0.5, 0.75, 1.0) for d in (0.5, 0.75, 1.0)]
        targets = STANDARD_TARGETS
    else:
        cells = [(0.5, 0.75), (1.0, 1.0), (0.25, 0.5)]
        targets = {(0.5, 0.75): 98}
    dyn_acc = {}
    for w, d in cells:
        r = test_acc(work / "dynabert", w, d)
        dyn_acc[(w, d)] = r["accuracy"]
        grid_test.append({"width": w, "depth": d, "accuracy": r["accuracy"], "n": r["n"]})
        if (w, d) in targets or args.schedule != "standard":
            rows.append({"name": f"DynaBERT width {w:g} depth {d:g}", "accuracy": r["accuracy"],
                         "target": targets.get((w, d)), "seconds": dyn_seconds,
                         "notes": f"{dr['train_examples']} examples; seconds = both stages"})

    qat, qat_test = {}, {}
    qat_granularity = s.get("qat_granularity", "layer")  # one scale per matrix or per output row; pack uses the same
    qtargets = QAT_TARGETS.get(args.schedule, QAT_TARGETS["demo"])

    def qat_cfg(mode, output, teacher=None, epochs=None, **kw):
        return QATConfig(teacher=teacher or work / "teacher", output=output, data=data(s["qat_examples"]), mode=mode,
                         epochs=epochs or s["qat_epochs"], batch_size=bs,
                         lr=s["qat_lr"][mode] if isinstance(s["qat_lr"], dict) else s["qat_lr"],
                         granularity=qat_granularity, w_attention=s.get("qat_w_attention", 1.0),
                         threads=args.threads, **kw)

    for mode in ("ternary", "binary"):
        log.info("qat %s", mode)
        qr = stage(mode, lambda: train_qat(qat_cfg(mode, work / mode)))
        r = test_acc(work / mode)
        qat[mode] = r["accuracy"]
        qat_test[mode] = r
        rows.append({"name": f"{mode} QAT (weights {qat_granularity}-wise + word embeddings, int8 activations)",
                     "accuracy": r["accuracy"], "target": qtargets[mode], "seconds": qr["training"]["seconds"],
                     "notes": f"{qr['train_examples']} examples x {qr['epochs']:g} epoch(s); dev before QAT "
                              f"(post-training {mode}) {qr['post_training_quantized_dev']['accuracy']:.1f}%"})
    tws = None
    if not args.no_tws:
        # BinaryBERT's ternary weight splitting on the same budget as plain binary QAT (the same number of
        # epochs, i.e. steps: half ternary, half binary), from DynaBERT's width-0.5 sub-network
        log.info("qat binary with ternary weight splitting")
        qr = stage("binary_tws", lambda: train_qat(qat_cfg("binary", work / "binary_tws", tws=True,
                                                              init=work / "dynabert")))
        r = test_acc(work / "binary_tws")
        qat["binary_tws"] = r["accuracy"]
        t = qr["tws"]
        tws = {"test": r, "ternary_dev": t["ternary_dev"], "split_dev": t["split_dev"],
               "split_max_abs_diff": t["split_max_abs_diff"], "width": t["width"],
               "heads_per_layer": t["heads_per_layer"], "ffn_size": t["ffn_size"], "steps": qr["training"]["steps"],
               "seconds": qr["training"]["seconds"], "stages": {k: {"steps": v["steps"], "seconds": v["seconds"]}
                                                               for k, v in qr["training"]["stages"].items()}}
        if "binary" in qat_test:  # paired on the same test reviews: exact McNemar, TWS vs plain binary
            from deploytool.stats import mcnemar_exact

            a, b = qat_test["binary"]["predictions"], r["predictions"]
            if a["ids"] == b["ids"]:
                ok_a = [p == y for p, y in zip(a["pred"], a["label"])]
                ok_b = [p == y for p, y in zip(b["pred"], b["label"])]
                only_plain = sum(x and not y for x, y in zip(ok_a, ok_b))
                only_tws = sum(y and not x for x, y in zip(ok_a, ok_b))
                tws["vs_plain_binary"] = {"n": len(ok_a), "only_plain_right": only_plain, "only_tws_right": only_tws,
                                          "mcnemar_p": mcnemar_exact(only_plain, only_tws),
                                          "points": round(r["accuracy"] - qat_test["binary"]["accuracy"], 3)}
                notes.append(f"binary with TWS vs plain binary on the same {len(ok_a)} test reviews: "
                             f"{tws['vs_plain_binary']['points']:+.2f} points; right only with TWS {only_tws}, only "
                             f"plain {only_plain}, exact McNemar p = {tws['vs_plain_binary']['mcnemar_p']:.2g}")
        rows.append({"name": "binary QAT with ternary weight splitting (BinaryBERT TWS: DynaBERT w0.5 ternary, "
                             "split into two binary planes, int8 activations)",
                     "accuracy": r["accuracy"], "target": qtargets["binary"], "seconds": qr["training"]["seconds"],
                     "notes": f"{qr['train_examples']} examples x {qr['epochs']:g} epoch(s) (the plain binary row's "
                              f"budget), {t['ternary_epochs']:g} ternary + {t['binary_epochs']:g} binary; dev "
                              f"ternary {t['ternary_dev']['accuracy']:.1f}%, right after the split "
                              f"{t['split_dev']['accuracy']:.1f}%"})
    if not args.no_onnx:
        from deploytool.export import ExportConfig, export

        tok = load_tokenizer(work / "teacher")

        def onnx_eval(name, path, ref):
            r = evaluate_onnx(path, tok, ds, "test", test_cfg, threads=args.threads)
            onnx_rows.append({"name": name, "accuracy": r["accuracy"], "pytorch": ref, "file": path.name,
                              "bytes": path.stat().st_size})

        try:
            export(ExportConfig(model=str(work / "dynabert"), task="sequence-classification"), work / "dyn.onnx")
            from deploytool.passes.slice_subnetwork import SliceConfig, slice_file

            for w, d in [(0.5, 0.75), (1.0, 0.5), (0.5, 0.5)]:
                if (w, d) not in dyn_acc:
                    continue
                dst = work / f"dyn_w{w:g}_d{d:g}.onnx"
                slice_file(work / "dyn.onnx", dst, SliceConfig(width=w, depth=d))
                onnx_eval(f"DynaBERT exported, sliced w{w:g} d{d:g}", dst, dyn_acc[(w, d)])
        except Exception as e:  # report, keep going: the PyTorch numbers stand on their own
            onnx_rows.append({"name": "DynaBERT sliced", "error": f"{type(e).__name__}: {e}"[:200]})
        for mode in [m for m in ("ternary", "binary", "binary_tws") if m in qat]:
            try:
                from deploytool.passes.pack_weights import PackConfig, pack_file

                export(ExportConfig(model=str(work / mode), task="sequence-classification"), work / f"{mode}.onnx")
                pw = "split-binary" if mode == "binary_tws" else mode
                dst = work / f"{mode}_speed.onnx"
                pack_file(work / f"{mode}.onnx", dst, PackConfig(weights=pw, runtime="speed", granularity=qat_granularity))
                onnx_eval(f"{mode} exported + packed (speed: int8 activations, as trained)", dst, qat[mode])
                # memory runtime at accuracy level 0 keeps fp32 activations: compare with PyTorch without them
                ref = evaluate_torch(load_classifier(work / mode), load_tokenizer(work / mode), ds, "test",
                                     test_cfg)["accuracy"]
                dst = work / f"{mode}_memory.onnx"
                pack_file(work / f"{mode}.onnx", dst, PackConfig(weights=pw, runtime="memory",
                                                                 granularity=qat_granularity, accuracy_level=0))
                onnx_eval(f"{mode} exported + packed (memory: MatMulNBits acc 0, fp32 activations; "
                          f"PyTorch with fp32 activations)", dst, ref)
                # the smallest files (#17 item 4): 5 trits per byte / 1 bit, then the pooler and classifier
                # packed too, then the position and token-type tables as well; QAT trained none of those
                # parts quantized, so this is what packing them costs after QAT
                fp32_bytes = (work / f"{mode}.onnx").stat().st_size
                for tag, extra, label in [
                        ("densest", {}, "densest (encoder and word embeddings)"),
                        ("densest_head", {"pack_head": True}, "densest, pooler + classifier packed too"),
                        ("densest_head_int8pos", {"pack_head": True, "position_embeddings": "int8"},
                         "densest, pooler + classifier packed, position/token-type tables int8"),
                        ("densest_all", {"pack_head": True, "position_embeddings": pw},
                         "densest, everything packed (pooler, classifier, position/token-type tables)")]:
                    dst = work / f"{mode}_{tag}.onnx"
                    pack_file(work / f"{mode}.onnx", dst, PackConfig(weights=pw, runtime="densest",
                                                                     granularity=qat_granularity, **extra))
                    onnx_eval(f"{mode} exported + packed {label}", dst, qat[mode])
                    onnx_rows[-1]["ratio_to_fp32_export"] = round(fp32_bytes / dst.stat().st_size, 2)
                    if extra:  # parts QAT never quantized: a loss is the measured cost, not a packing error
                        onnx_rows[-1]["lossy"] = True
            except Exception as e:
                onnx_rows.append({"name": f"{mode} packed", "error": f"{type(e).__name__}: {e}"[:200]})

    res = {"schedule": args.schedule, "schedule_settings": s, "threads": args.threads,
           "machine": f"{_cpu_name()}, {platform.machine()}, {os.cpu_count()} logical CPUs, load avg "
                      f"{load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end",
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "dataset": ds.info.to_dict(), "max_length": args.max_length, "rows": rows, "onnx": onnx_rows,
           "teacher": {"test": teacher_test, "dev": tr["dev"], "train": tr["training"]},
           "dynabert_dev": dr["dev"], "dynabert_test": grid_test, "dynabert_importance": dr["importance"],
           "dynabert_stages": dr["stages"], "reused_stages": reused, "tws": tws,
           "train_seconds": round(sum(x for x in [tr["training"]["seconds"], dyn_seconds] if x), 1),
           "total_seconds": round(time.perf_counter() - t_all, 1), "workdir": str(work), "notes": notes}
    notes += args.note
    if reused:
        notes.append(f"stages {', '.join(reused)} were trained by an earlier run in the same workdir and reused; "
                     "total_seconds counts only this run, the rows' train seconds are each stage's own")
    if any(r["depth"] < 1 and r["accuracy"] < 60 for r in grid_test):
        notes.append("some depth-reduced sub-networks are still near the majority class: their [CLS] state "
                     "hardly varies across inputs (all-MiniLM-L6-v2 was pretrained with mean pooling and "
                     "DynaBERT's rule drops its last layer at every depth below 1); the depth stage was too short")
    if args.schedule not in ("full", "standard"):
        notes.append(f"'{args.schedule}' schedule: subsets of the training split and single epochs so it fits a "
                     "2-core machine; see SCHEDULES['standard']")
    res["run"] = stamp(run)
    out = args.out
    j, m = write_train_report(res, out / f"train_bench_{args.schedule}.json", out / f"train_bench_{args.schedule}.md")
    print(m.read_text())
    return 0



def _cpu_name() -> str:
    from deploytool.runtime.host import detect_host

    h = detect_host()
    return f"{h.model_name} (family {h.family}, model {h.model}, {h.microarchitecture})"

if __name__ == "__main__":
    sys.exit(main())
