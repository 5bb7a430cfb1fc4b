"""The pipeline at a user's size: time and peak memory against plain scripts, 20,000 to 10,000,000 rows.

For each size, the NYC sample grown to that many distinct rows (benchmarks/grow_table.py, cached
under benchmarks/results/tables/), on a fresh store each time, W&B disabled unless --wandb says:

- data: the four data steps through `mlflow run . -P steps=download,basic_cleaning,data_check,
  data_split`, each step's seconds and the whole process tree's peak memory (PSS), against
  benchmarks/plain_data_script.py (the same work as one plain script) and the floor (`mlflow run`
  of an empty project: MLflow's own command line). Goal at 1,000,000 rows:
  (data steps - floor) / plain <= 1.5, memory <= 2x the plain script's.
- train (--train): the train step (`model=hist_gradient_boosting` unless --model says otherwise)
  against benchmarks/plain_fit.py on the same rows: its `fit` alone and its whole process.
  Goal: the step within 1.1x of the plain fit.
- inference (--inference): the model promoted to prod, then the inference step on the whole table
  (a fresh ledger), then again with 1 % of the rows changed, against benchmarks/plain_predict.py
  (pyfunc `predict` on the same rows). Goals: full >= 0.9x plain's throughput; incremental
  <= 10 % of the full step.

Prints one table, writes benchmarks/results/scale.json, and with --plot draws time and memory
against rows (log-log) as a PNG.

    python benchmarks/scale.py                                   # 20k, 200k, 1M rows: data steps
    python benchmarks/scale.py --train --inference --plot docs/scale.png
    python benchmarks/scale.py --rows 10000000 --train           # the 10M run (opt-in: minutes)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_utils import ROOT, print_table, project_env, run_sampled
from grow_table import grow
from pipeline_vs_script import empty_project

BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results"
DATA_STEPS = ("download", "basic_cleaning", "data_check", "data_split")
STEP_LINE = re.compile(r"^(\w+)\s+(?:done|reused)\s+([\d.]+)\s", re.MULTILINE)


def table(rows: int) -> Path:
    path = RESULTS / "tables" / f"nyc_{rows}.csv"
    if not path.exists():
        print(f"  growing the sample to {rows} rows", file=sys.stderr)
        grow(rows, path)
    return path


def store(folder: Path, wandb: str) -> dict[str, str]:
    return project_env(
        MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}",
        MLPIPE_OUTPUT_ROOT=str(folder),
        MLPIPE_WANDB_MODE=wandb,
        WANDB_DIR=str(folder),
    )


def pipeline(steps: str, options: str) -> list[str]:
    return [
        str(BIN / "mlflow"),
        "run",
        ".",
        "--env-manager",
        "local",
        "-P",
        f"steps={steps}",
        "-P",
        f"hydra_options={options}",
    ]


def step_seconds(output: str) -> dict[str, float]:
    return {name: float(seconds) for name, seconds in STEP_LINE.findall(output)}


def value(output: str, label: str) -> float:
    found = re.search(rf"{label} ([\d.]+)", output)
    if not found:
        sys.exit(f"no '{label}' in:\n{output[-2000:]}")
    return float(found.group(1))


def measure(rows: int, args: argparse.Namespace, floor: float) -> dict[str, Any]:
    source = table(rows)
    options = f"dataset.source={source} dataset.checks.rows=[1,1000000000]"
    model = f"model={args.model}"
    result: dict[str, Any] = {"rows": rows}
    with tempfile.TemporaryDirectory(prefix="mlpipe-scale-") as tmp:
        folder = Path(tmp)
        env = store(folder, args.wandb)
        seconds, _, memory = run_sampled(
            [str(BIN / "python"), "benchmarks/plain_data_script.py", str(source), str(folder / "plain")], env
        )
        result["plain"] = {"seconds": seconds, "memory_mb": memory}
        seconds, output, memory = run_sampled(pipeline(",".join(DATA_STEPS), options), env)
        result["data"] = {"seconds": seconds, "memory_mb": memory, "steps": step_seconds(output)}
        result["data"]["ratio"] = (seconds - floor) / result["plain"]["seconds"]
        if args.train or args.inference:
            plain_fit = [
                str(BIN / "python"),
                "benchmarks/plain_fit.py",
                str(folder / "plain" / "trainval.parquet"),
            ]
            seconds, output, memory = run_sampled([*plain_fit, model], env)
            result["plain_fit"] = {
                "seconds": seconds,
                "fit_seconds": value(output, "fit seconds"),
                "memory_mb": memory,
            }
            seconds, output, memory = run_sampled(pipeline("train", f"{options} {model}"), env)
            step = step_seconds(output)["train"]
            result["train"] = {"seconds": seconds, "step_seconds": step, "memory_mb": memory}
            result["train"]["ratio"] = step / result["plain_fit"]["fit_seconds"]
        if args.inference:
            result["inference"] = measure_inference(source, folder, env, options, model)
    return result


def measure_inference(source: Path, folder: Path, env: dict[str, str], options: str, model: str) -> dict:
    from grow_table import edit_rows

    run_sampled(pipeline("test_model,promote", f"{options} {model}"), env)
    ledger = f"inference.ledger_uri=sqlite:///{folder / 'ledger.db'}"
    scoring = f"{options} {model} {ledger} inference.source={source}"
    plain_seconds, output, plain_memory = run_sampled(
        [str(BIN / "python"), "benchmarks/plain_predict.py", str(source), f"{options} {model}"], env
    )
    _, output, full_memory = run_sampled(pipeline("inference", scoring), env)
    full_step = step_seconds(output)["inference"]
    changed = edit_rows(source, folder / "changed.csv", fraction=0.01)
    _, output, _ = run_sampled(
        pipeline("inference", f"{options} {model} {ledger} inference.source={changed}"), env
    )
    return {
        "plain_seconds": plain_seconds,
        "plain_memory_mb": plain_memory,
        "full_step_seconds": full_step,
        "full_memory_mb": full_memory,
        "throughput_ratio": plain_seconds / full_step,
        "incremental_step_seconds": step_seconds(output)["inference"],
        "incremental_ratio": step_seconds(output)["inference"] / full_step,
    }


def report(results: list[dict[str, Any]], floor: float) -> None:
    rows = []
    for r in results:
        data, plain = r["data"], r["plain"]
        steps = " / ".join(f"{data['steps'].get(s, float('nan')):.1f}" for s in DATA_STEPS)
        rows.append(
            (
                f"{r['rows']:,}",
                f"{plain['seconds']:.1f}",
                f"{data['seconds']:.1f}",
                steps,
                f"{data['ratio']:.2f}",
                f"{plain['memory_mb']:.0f}",
                f"{data['memory_mb']:.0f}",
                f"{data['memory_mb'] / plain['memory_mb']:.2f}",
            )
        )
    print_table(
        (
            "rows",
            "plain s",
            "data steps s",
            "download / cleaning / check / split s",
            "(steps - floor) / plain",
            "plain MB",
            "pipeline MB",
            "memory ratio",
        ),
        rows,
        title=f"The four data steps against a plain script (floor: an empty `mlflow run`, {floor:.1f} s)",
    )
    trained = [r for r in results if "train" in r]
    if trained:
        print_table(
            ("rows", "plain fit s", "its process s", "train step s", "step / fit", "fit MB", "train MB"),
            [
                (
                    f"{r['rows']:,}",
                    f"{r['plain_fit']['fit_seconds']:.1f}",
                    f"{r['plain_fit']['seconds']:.1f}",
                    f"{r['train']['step_seconds']:.1f}",
                    f"{r['train']['ratio']:.2f}",
                    f"{r['plain_fit']['memory_mb']:.0f}",
                    f"{r['train']['memory_mb']:.0f}",
                )
                for r in trained
            ],
            title="The train step against a plain fit of the same pipeline on the same rows",
        )
    scored = [r for r in results if "inference" in r]
    if scored:
        print_table(
            ("rows", "plain predict s", "inference s", "plain / step", "1 % changed s", "changed / full"),
            [
                (
                    f"{r['rows']:,}",
                    f"{i['plain_seconds']:.1f}",
                    f"{i['full_step_seconds']:.1f}",
                    f"{i['throughput_ratio']:.2f}",
                    f"{i['incremental_step_seconds']:.1f}",
                    f"{i['incremental_ratio']:.2f}",
                )
                for r in scored
                for i in [r["inference"]]
            ],
            title="Batch inference against a plain pyfunc predict of the same rows",
        )


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, key in (
        ("four data steps (mlflow run)", "data"),
        ("plain data script", "plain"),
        ("train step (mlflow run)", "train"),
        ("plain fit (its process)", "plain_fit"),
    ):
        measured = [r for r in results if key in r]
        if measured:
            rows = [r["rows"] for r in measured]
            time_axis.plot(rows, [r[key]["seconds"] for r in measured], marker="o", label=label)
            memory_axis.plot(rows, [r[key]["memory_mb"] for r in measured], marker="o", label=label)
    for axis, ylabel in ((time_axis, "seconds"), (memory_axis, "peak memory, MB (PSS of the process tree)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("rows")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
    time_axis.legend(fontsize=8)
    figure.suptitle("mlpipe at scale: the pipeline against plain scripts (2 cores)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"plot: {path}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", default="20000,200000,1000000", help="comma-separated sizes (10000000: opt-in)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="medians over this many runs of each size")
    parser.add_argument("--train", action="store_true", help="also the train step against a plain fit")
    parser.add_argument("--inference", action="store_true", help="also batch inference (implies --train)")
    parser.add_argument("--model", default="hist_gradient_boosting")
    parser.add_argument(
        "--wandb", default="disabled", help="MLPIPE_WANDB_MODE of the runs (offline: a user's default)"
    )
    parser.add_argument("--plot", type=Path, default=None, help="write the PNG plot here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = store(Path(tmp), "disabled")
        floors = [run_sampled([str(BIN / "mlflow"), "run", str(empty_project())], env)[0] for _ in range(3)]
    floor = statistics.median(floors)
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        runs = []
        for repeat in range(args.repeats):
            print(f"{rows} rows, run {repeat + 1}/{args.repeats}", file=sys.stderr)
            runs.append(measure(rows, args, floor))
        results.append(median_run(runs))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps({"floor": floor, "results": results}, indent=2))
    report(results, floor)
    if args.plot:
        plot(results, args.plot)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the runs (the runs have the same shape)."""
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    merged: dict[str, Any] = {}
    for key, item in first.items():
        if isinstance(item, dict):
            merged[key] = median_run([r[key] for r in runs])
        elif isinstance(item, (int, float)):
            merged[key] = statistics.median(r[key] for r in runs)
        else:
            merged[key] = item
    return merged


if __name__ == "__main__":
    main()
