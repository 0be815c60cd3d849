#!/usr/bin/python3
"""The results of the experiment pipelines as JSON and as a Markdown table (results.md).

    report.py training-size DIR --sizes "500 2000" --seeds "1 2 3" --command CMD [--figure PNG]
    report.py table1 DIR --heads "ova softmax" --seeds "1" --smoothing EPS --images N --command CMD
    report.py table2 DIR --strategies "sgd-1 ..." --seeds "1" --images N --command CMD
    report.py adversarial DIR --eps E --fgsm FILE --command CMD
    report.py resnet DIR --dataset cifar10|svhn --variants "aug plain" --seeds "1" --command CMD

Each reads the run directories its pipeline made under DIR (a run not finished yet is "not
run"), writes DIR/results.jsonl (training-size) or DIR/results.json, and DIR/results.md:
the table, then (where the pipeline ran `icn-eval compare`) each method against the
baseline image by image, then the machine, the pipeline's command line and each run's exact command and
wall time (from DIR/runs.jsonl, which pipelines/lib.sh's run_step appends to). Prints the
table. Called by the pipelines; nothing here trains or evaluates anything.
"""
import argparse
import json
import os
import statistics
import sys
import time

METHOD_LABEL = {"baseline": "baseline", "smooth": "label smoothing", "noise": "ICN-noise", "icn": "ICN"}
HEAD_LABEL = {"ova": "one-vs-all", "softmax": "softmax"}


def load_json(path):
    """The parsed file, or None when it does not exist yet."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def error_of(path):
    d = load_json(path)
    if d is None:
        return None
    e = d["error"]
    if not (isinstance(e, (int, float)) and 0 <= e <= 1):
        sys.exit(f"report: {path}: error {e!r} is not a number in [0, 1]")
    return e


def mean_sd(values):
    """(mean, sample standard deviation or 0 for one value, count), or None for no values."""
    if not values:
        return None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def cell(values):
    s = mean_sd(values)
    if s is None:
        return "not run"
    m, sd, n = s
    if n == 1:
        return "%.2f%% (1 seed)" % (100 * m)
    return "%.2f%% ± %.2f (%d seeds: %s)" % (100 * m, 100 * sd, n, ", ".join("%.2f" % (100 * v) for v in values))


def summary(values):
    s = mean_sd(values)
    return None if s is None else {"mean": s[0], "sd": s[1], "seeds": s[2], "errors": values}


def against_baseline(rows):
    """rows: (label, path of an `icn-eval compare --json` file, baseline first). Returns the
    Markdown section (empty when no file exists) and {label: pooled counts and pairs}."""
    found = {}
    for label, path in rows:
        c = load_json(path)
        if c is None:
            continue
        p = c["pooled"]
        if not (0 <= p["only_a_wrong"] <= p["wrong_a"] <= p["n"] and 0 <= p["only_b_wrong"] <= p["wrong_b"] <= p["n"]
                and 0 <= p["p_value"] <= 1):
            sys.exit(f"report: {path}: inconsistent counts: {p}")
        found[label] = dict(p, pairs=len(c["pairs"]))
    if not found:
        return [], found
    md = ["", "## Against the baseline, image by image", "",
          "Test images only the baseline gets wrong and only the method gets wrong, summed over the seeds that have both "
          "models, and McNemar's exact two-sided p-value of that split (`icn-eval compare`): a small p means the "
          "difference is more than seed luck.", "",
          "| method | seeds | only the baseline wrong | only the method wrong | McNemar exact p |", "|---|---|---|---|---|"]
    md += ["| %s | %d | %d | %d | %.2g |" % (md_escape(label), c["pairs"], c["only_a_wrong"], c["only_b_wrong"], c["p_value"])
           for label, c in found.items()]
    return md, found


def md_escape(s):
    return s.replace("|", "\\|")


def duration(s):
    s = float(s)
    if s < 120:
        return "%.1f s" % s
    m, sec = divmod(int(round(s)), 60)
    return "%d min %02d s" % (m, sec) if m < 60 else "%d h %02d min" % divmod(m, 60)


def ledger(d):
    """The last entry of each run in DIR/runs.jsonl, in order of first appearance."""
    runs = {}
    path = os.path.join(d, "runs.jsonl")
    if os.path.exists(path):
        for line in open(path):
            if line.strip():
                e = json.loads(line)
                runs[e["run"]] = e
    return runs


def how_it_was_run(d, command):
    runs = ledger(d)
    machines = sorted({e.get("machine", "?") for e in runs.values()})
    out = ["", "## How it was run", ""]
    if machines:
        out.append("Machine%s: %s." % ("s" if len(machines) > 1 else "", "; ".join(machines)))
    else:
        out.append("Machine: not recorded (no run in runs.jsonl: none has finished yet, or the runs predate that record).")
    out += ["", "Pipeline: `%s` (this report written %s, load average %.2f)." %
            (command, time.strftime("%Y-%m-%d %H:%M %Z"), os.getloadavg()[0]), ""]
    if runs:
        total = sum(e["wall_s"] for e in runs.values())
        out += ["Each run, its wall time (the last attempt's, for a run resumed after an interruption) and its exact command; %s in all (summed; runs started with --jobs overlap):" % duration(total), "",
                "| run | wall time | command |", "|---|---|---|"]
        out += ["| %s | %s | `%s` |" % (name, duration(e["wall_s"]), md_escape(e["command"])) for name, e in runs.items()]
    return out


def write(d, name, text):
    tmp = os.path.join(d, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(d, name))


def training_size(a):
    d = a.dir
    rows, lines, clipped = [], [], []

    def clip(run):
        w = load_json(os.path.join(d, run, "wall.json"))
        return w.get("clip_grad", 0) if w else 0

    for n in a.sizes.split():
        table = {"baseline": [], "icn": [], "noise": []}
        for s in a.seeds.split():
            for method, path in (("baseline", f"n{n}-s{s}-icn/baseline-eval.json"), ("icn", f"n{n}-s{s}-icn/icn-eval.json"),
                                 ("noise", f"n{n}-s{s}-noise/icn-eval.json")):
                e = error_of(os.path.join(d, path))
                if e is None:
                    continue
                c = clip(os.path.dirname(path))
                table[method].append(e)
                if c and (n, s) not in clipped:
                    clipped.append((n, s))
                lines.append(json.dumps({"images": int(n), "seed": int(s), "method": method, "error": e, "clip_grad": c}))
        rows.append(f"| {n} | " + " | ".join(cell(table[m]) for m in ("baseline", "icn", "noise")) + " |")
    write(d, "results.jsonl", "".join(l + "\n" for l in lines))
    compared, _ = against_baseline([("%s, %s images" % (METHOD_LABEL[m], n), os.path.join(d, f"compare-n{n}-{m}.json"))
                                    for n in a.sizes.split() for m in ("icn", "noise")])
    table = ["| training images | baseline | ICN | ICN-noise |", "|---|---|---|---|"] + rows
    if clipped:
        table += ["", "Gradient-norm clipping (every method) in: " + ", ".join("%s images seed %s" % c for c in clipped)]
    md = ["# Test error against training-set size (the paper's Figure 3)", "",
          "Mean ± standard deviation over seeds of the test error on the 10,000 MNIST test images; "
          "each seed draws its own training subset, the same for every method.", ""] + table
    if a.figure:
        md += ["", "![test error against training-set size](%s)" % a.figure, "",
               "Drawn with `%s`." % a.plot_command]
    write(d, "results.md", "\n".join(md + compared + how_it_was_run(d, a.command)) + "\n")
    print("\n".join(table + compared))


def table1(a):
    d, heads, seeds = a.dir, a.heads.split(), a.seeds.split()
    methods = ("baseline", "smooth", "noise", "icn")
    runs, result = [], {}
    for h in heads:
        for m in methods:
            errors = []
            for s in seeds:
                path = os.path.join(d, f"{h}-s{s}-noise/icn-eval.json") if m == "noise" else \
                    os.path.join(d, f"{h}-s{s}-icn/{'icn' if m == 'icn' else m}-eval.json")
                e = error_of(path)
                if e is not None:
                    errors.append(e)
                    runs.append({"head": h, "method": m, "seed": int(s), "error": e})
            result.setdefault(m, {})[h] = summary(errors)
    compared, vs = against_baseline([("%s, %s" % (METHOD_LABEL[m], HEAD_LABEL.get(h, h)), os.path.join(d, f"compare-{h}-{m}.json"))
                                     for h in heads for m in ("icn", "noise", "smooth")])
    write(d, "results.json", json.dumps({"experiment": "table1", "train_images": a.images, "seeds": [int(s) for s in seeds],
                                         "label_smoothing": a.smoothing, "runs": runs, "summary": result,
                                         "against_baseline": vs}, indent=1) + "\n")
    table = ["| method | " + " | ".join(HEAD_LABEL.get(h, h) for h in heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for m in methods:
        label = "label smoothing (%g)" % a.smoothing if m == "smooth" else METHOD_LABEL[m]
        cells = []
        for h in heads:
            s = result[m][h]
            if m == "smooth" and h == "ova":
                cells.append("n/a")
            else:
                cells.append(cell(s["errors"]) if s else "not run")
        table.append(f"| {label} | " + " | ".join(cells) + " |")
    md = ["# Table 1: MNIST test error by head", "",
          "Test error on the 10,000 MNIST test images, %s training images; mean ± standard deviation over seeds %s. "
          "Every method sees the same real batches for the same number of steps (the ICN run's schedule); "
          "label smoothing is a baseline trained with `--label-smoothing %g`." % (f"{a.images:,}", ", ".join(seeds), a.smoothing),
          ""] + table
    if "ova" in heads:
        md += ["", "n/a: the trainer's label smoothing applies to the softmax head only (`icn-classify --help`)."]
    write(d, "results.md", "\n".join(md + compared + how_it_was_run(d, a.command)) + "\n")
    print("\n".join(table + compared))


def rounds_of(path):
    """The trainer's round events of an ICN run (its --metrics file)."""
    if not os.path.exists(path):
        return []
    return [e for e in (json.loads(l) for l in open(path) if l.strip()) if e.get("event") == "round"]


def strategy_label(s):
    method, _, stop = s.partition("-")
    return "%s, stop option %s" % ({"sgd": "SGD", "langevin": "SGD-Langevin"}.get(method, method), stop)


def table2(a):
    d, strategies, seeds = a.dir, a.strategies.split(), a.seeds.split()
    runs, rows = [], []
    base = []
    for s in seeds:
        e = error_of(os.path.join(d, f"{strategies[0]}-s{s}/baseline-eval.json"))
        if e is not None:
            base.append(e)
            runs.append({"strategy": "baseline", "seed": int(s), "error": e})
    result = {"baseline": summary(base)}
    for st in strategies:
        errors, reached, wait = [], [], []
        for s in seeds:
            run = os.path.join(d, f"{st}-s{s}")
            e = error_of(os.path.join(run, "icn-eval.json"))
            if e is None:
                continue
            rs = rounds_of(os.path.join(run, "icn.jsonl"))
            r = {"strategy": st, "seed": int(s), "error": e,
                 "reached_fraction": statistics.mean(x["reached_fraction"] for x in rs) if rs else None,
                 "synthesis_wait_s": sum(x["wait_s"] for x in rs)}
            errors.append(e)
            if r["reached_fraction"] is not None:
                reached.append(r["reached_fraction"])
            wait.append(r["synthesis_wait_s"])
            runs.append(r)
        result[st] = summary(errors)
        rows.append("| %s | %s | %s | %s |" % (strategy_label(st), cell(errors),
                                              "%.2f" % statistics.mean(reached) if reached else "—",
                                              duration(statistics.mean(wait)) if wait else "—"))
    compared, vs = against_baseline([(strategy_label(st), os.path.join(d, f"compare-{st}.json")) for st in strategies])
    write(d, "results.json", json.dumps({"experiment": "table2", "train_images": a.images, "seeds": [int(s) for s in seeds],
                                         "runs": runs, "summary": result, "against_baseline": vs}, indent=1) + "\n")
    table = ["| sampling strategy | test error | pseudo-negatives meeting the stop rule | trainer's wait for synthesis per run |",
             "|---|---|---|---|", "| baseline (no synthesis) | %s | — | — |" % cell(base)] + rows
    md = ["# Table 2: sampling strategies", "",
          "ICN test error on the 10,000 MNIST test images, %s training images, seeds %s, for each way of synthesizing "
          "pseudo-negatives (`icn-synthesize --method sgd|langevin --stop 1|2|3`; stop option 1: until classified positive, "
          "2: until the logit exceeds the threshold, 3: always the step cap). The baseline has the same real-data schedule. "
          "Stop rule: the mean over rounds of the fraction of a round's pseudo-negatives that met it within the step cap." %
          (f"{a.images:,}", ", ".join(seeds)), ""] + table
    write(d, "results.md", "\n".join(md + compared + how_it_was_run(d, a.command)) + "\n")
    print("\n".join(table + compared))


def adversarial(a):
    d = a.dir
    fgsm = a.fgsm
    r = load_json(fgsm)
    if r is None:
        sys.exit(f"report: {fgsm}: missing (icn-eval fgsm has not run)")
    names = {"a_to_b": ("baseline", "ICN"), "b_to_a": ("ICN", "baseline")}
    table = ["| adversarial examples made against | test images it classifies correctly | of those, fool it | "
             "of those, also fool | proportion that also fool the other |", "|---|---|---|---|---|"]
    for k, (src, dst) in names.items():
        x = r[k]
        if not (0 <= x["fool_both"] <= x["fool_source"] <= x["correct"] <= x["tested"]):
            sys.exit(f"report: {fgsm}: inconsistent counts for {k}: {x}")
        x["proportion_fool_both"] = x["fool_both"] / x["fool_source"] if x["fool_source"] else None
        x["proportion_fool_source"] = x["fool_source"] / x["correct"] if x["correct"] else None
        p = x["proportion_fool_both"]
        table.append("| %s | %d of %d | %d (%.1f%%) | %s: %d | %s |" % (
            src, x["correct"], x["tested"], x["fool_source"], 100 * (x["proportion_fool_source"] or 0), dst, x["fool_both"],
            "%.1f%%" % (100 * p) if p is not None else "—"))
    r["errors"] = {"baseline": error_of(os.path.join(d, "baseline-eval.json")), "icn": error_of(os.path.join(d, "icn-eval.json"))}
    write(d, "results.json", json.dumps(dict(r, experiment="adversarial"), indent=1) + "\n")
    e = r["errors"]
    md = ["# Adversarial examples both ways (FGSM)", "",
          "The paper's two-way test: the test images a model classifies correctly are perturbed by the fast gradient sign "
          "method with eps %g on the [0, 1] pixel scale (`icn-eval fgsm`); of those that fool the model they were made "
          "against, how many also fool the other. A smaller proportion for examples made against the baseline than for "
          "those made against ICN means ICN is the more robust." % a.eps, "",
          "Models: baseline `%s` (test error %s), ICN `%s` (test error %s)." % (
              r["model_a"], "%.2f%%" % (100 * e["baseline"]) if e["baseline"] is not None else "not measured",
              r["model_b"], "%.2f%%" % (100 * e["icn"]) if e["icn"] is not None else "not measured"), ""] + table
    write(d, "results.md", "\n".join(md + how_it_was_run(d, a.command)) + "\n")
    print("\n".join(table))


def resnet(a):
    d, variants, seeds = a.dir, a.variants.split(), a.seeds.split()
    label = {"aug": "with augmentation", "plain": "without augmentation"}
    runs, result = [], {}
    for v in variants:
        for m in ("baseline", "icn"):
            errors = []
            for s in seeds:
                e = error_of(os.path.join(d, f"{v}-s{s}", f"{m}-eval.json"))
                if e is not None:
                    errors.append(e)
                    runs.append({"variant": v, "method": m, "seed": int(s), "error": e})
            result.setdefault(v, {})[m] = summary(errors)
    write(d, "results.json", json.dumps({"experiment": "resnet", "dataset": a.dataset, "seeds": [int(s) for s in seeds],
                                         "runs": runs, "summary": result}, indent=1) + "\n")
    table = ["| %s, ResNet | baseline | ICN |" % {"cifar10": "CIFAR-10", "svhn": "SVHN"}[a.dataset], "|---|---|---|"]
    for v in variants:
        table.append("| %s | %s | %s |" % (label[v], *(cell(result[v][m]["errors"]) if result[v][m] else "not run"
                                                        for m in ("baseline", "icn"))))
    md = ["# %s: ResNet-32, baseline vs ICN" % {"cifar10": "Table 3 (CIFAR-10)", "svhn": "Table 4 (SVHN)"}[a.dataset], "",
          "Test error on the test set; mean ± standard deviation over seeds %s. The baseline sees the same real batches "
          "for the same number of steps as its ICN run." % ", ".join(seeds), ""] + table
    write(d, "results.md", "\n".join(md + how_it_was_run(d, a.command)) + "\n")
    print("\n".join(table))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="kind", required=True)
    for kind in ("training-size", "table1", "table2", "adversarial", "resnet"):
        p = sub.add_parser(kind)
        p.add_argument("dir")
        p.add_argument("--command", required=True)
        if kind in ("training-size", "table1", "table2", "resnet"):
            p.add_argument("--seeds", required=True)
        if kind in ("table1", "table2"):
            p.add_argument("--images", type=int, required=True)
    sub.choices["training-size"].add_argument("--sizes", required=True)
    sub.choices["training-size"].add_argument("--figure")
    sub.choices["training-size"].add_argument("--plot-command")
    sub.choices["table1"].add_argument("--heads", required=True)
    sub.choices["table1"].add_argument("--smoothing", type=float, required=True)
    sub.choices["table2"].add_argument("--strategies", required=True)
    sub.choices["adversarial"].add_argument("--eps", type=float, required=True)
    sub.choices["adversarial"].add_argument("--fgsm", required=True, help="icn-eval fgsm --json output")
    sub.choices["resnet"].add_argument("--dataset", choices=("cifar10", "svhn"), required=True)
    sub.choices["resnet"].add_argument("--variants", required=True)
    a = ap.parse_args()
    {"training-size": training_size, "table1": table1, "table2": table2, "adversarial": adversarial,
     "resnet": resnet}[a.kind](a)


if __name__ == "__main__":
    main()
