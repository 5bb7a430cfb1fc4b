"""data_check: runs the data tests (pytest): those of the dataset's kind (columns and types, known
categories, value ranges; image classes, shape, pixels) and those of every kind: row count, the
columns the config names, and drift against the version aliased `reference` (KL divergence of
category distributions, KS test on numbers). On the first run the checked data becomes the
reference."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpipe.data.drift import DriftThresholds
from mlpipe.pipeline.contract import StepContract, StepParams, param, reads
from mlpipe.pipeline.step import run_script, step_run


@dataclass(frozen=True)
class Params(StepParams, DriftThresholds):
    input_artifact: str = reads("clean_data", "Reference of the data to check")
    reference_alias: str = param("Alias of the version the data is compared with (set on the first run)")


CONTRACT = StepContract("data_check", Params, __doc__)


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


def run(params: Params) -> None:
    import pytest

    from mlpipe.data import check_fixtures, checks
    from mlpipe.errors import StepError

    with step_run(CONTRACT, params) as step:
        version, data_path = step.use(params.input_artifact)
        reference = step.store.find(f"{version.name}:{params.reference_alias}")
        thresholds = {f.name: getattr(params, f.name) for f in dataclasses.fields(DriftThresholds)}
        measured = step.workdir / "measurements.json"
        options = [
            f"--data={data_path}",
            f"--dataset-config={params.dataset_config}",
            f"--thresholds={json.dumps(thresholds)}",
            f"--measurements={measured}",
        ]
        if reference is None:
            step.log.info(
                "no '%s' version of %s yet: the drift tests are skipped and this data "
                "becomes the reference if the other tests pass",
                params.reference_alias,
                version.name,
            )
        else:
            _, ref_path = step.use(reference.ref)
            options.append(f"--ref={ref_path}")
        collector = FailureCollector()
        tests = [Path(checks.__file__), step.spec.kind.checks]
        ini = step.workdir / "pytest.ini"  # an empty config: not the project's own test settings
        ini.write_text("[pytest]\n")
        code = pytest.main(
            [
                *map(str, tests),
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
                f"--config-file={ini}",
                *options,
            ],
            plugins=[collector, check_fixtures],
        )
        if measured.exists():
            step.log_metrics(json.loads(measured.read_text()))
        step.log_metrics({f"tests_{k}": v for k, v in collector.outcomes.items()})
        if collector.failures:
            raise StepError(
                f"{step.name}: {len(collector.failures)} data test(s) failed on {version.ref}: "
                + "; ".join(collector.failures)
            )
        if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            raise StepError(
                f"{step.name}: the data tests could not run on {version.ref} (pytest exit {int(code)})"
            )
        if reference is None:
            step.set_alias(version, data_path, params.reference_alias)
            step.log.info("%s is now '%s'", version.ref, params.reference_alias)
        step.log.info("all data tests passed on %s", version.ref)


if __name__ == "__main__":
    run_script(CONTRACT, run)
