"""data_check: run the data tests (pytest) on the clean data against the reference version.

On the first run, when no version holds the reference alias, the checked data becomes it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from mlpipe.component import run_script, step_run
from mlpipe.errors import StepError
from mlpipe.images import is_image_dataset
from mlpipe.paths import resolve_path
from mlpipe.schema import DatasetSpec

STEP = "data_check"
TESTS_DIR = Path(__file__).resolve().parent
TESTS = {"table": "test_data.py", "images": "test_images.py"}  # the tests of each dataset kind


class FailureCollector:
    """A pytest plugin that keeps each failed test's one-line reason."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.outcomes: dict[str, int] = {"passed": 0, "failed": 0, "skipped": 0}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.outcomes[report.outcome] += 1
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            reason = crash.message.splitlines()[0] if crash else str(report.longrepr).splitlines()[-1]
            self.failures.append(f"{report.nodeid.split('::')[-1]}: {reason}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input_artifact", default="clean_data:latest")
    parser.add_argument("--reference_alias", default="reference")
    parser.add_argument("--dataset_config", default="conf/dataset/nyc_airbnb.yaml")
    parser.add_argument("--kl_threshold", type=float, default=0.2)
    parser.add_argument("--ks_alpha", type=float, default=0.001)
    parser.add_argument("--ks_sample_size", type=float, default=2000)
    return parser.parse_args(argv)


def go(args: argparse.Namespace) -> None:
    with step_run(STEP, vars(args)) as step:
        config = resolve_path(args.dataset_config)
        kind = "images" if is_image_dataset(DatasetSpec.from_file(config).raw) else "table"
        version, data_path = step.use(args.input_artifact)
        reference = step.store.find(f"{version.name}:{args.reference_alias}")
        options = [
            "--data",
            str(data_path),
            "--dataset-config",
            str(config),
            "--kl-threshold",
            str(args.kl_threshold),
            "--ks-alpha",
            str(args.ks_alpha),
            "--ks-sample-size",
            str(int(args.ks_sample_size)),
            "--measurements",
            str(step.workdir / "measurements.json"),
        ]
        if reference is None:
            step.log.info(
                "no '%s' version of %s yet: the drift tests are skipped and this data "
                "becomes the reference if the other tests pass",
                args.reference_alias,
                version.name,
            )
        else:
            _, ref_path = step.use(reference.ref)
            options += ["--ref", str(ref_path)]
        collector = FailureCollector()
        code = pytest.main(
            [
                str(TESTS_DIR / TESTS[kind]),
                "-q",
                "-rN",
                "--no-header",
                # Only pytest's own plugins, and not the one that runs gc.collect() five times at
                # the end (about 1 s with a pipeline's objects in memory).
                "--disable-plugin-autoload",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:unraisableexception",
                f"--rootdir={TESTS_DIR}",
                *options,
            ],
            plugins=[collector],
        )
        measured = step.workdir / "measurements.json"
        if measured.exists():
            step.log_metrics(json.loads(measured.read_text()))
        step.log_metrics({f"tests_{k}": v for k, v in collector.outcomes.items()})
        if collector.failures:
            raise StepError(
                f"{STEP}: {len(collector.failures)} data test(s) failed on {version.ref}: "
                + "; ".join(collector.failures)
            )
        if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            raise StepError(
                f"{STEP}: the data tests could not run on {version.ref} (pytest exit {int(code)})"
            )
        if reference is None:
            step.set_alias(version, data_path, args.reference_alias)
            step.log.info("%s is now '%s'", version.ref, args.reference_alias)
        step.log.info("all data tests passed on %s", version.ref)


if __name__ == "__main__":
    run_script(STEP, parse_args, go)
