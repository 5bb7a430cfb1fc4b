"""W&B mirroring: the mode, the fail-fast check, the online decisions, and what real wandb writes
offline (read back from its `.wandb` files)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import wandb
from mlflow.tracking import MlflowClient

from mlpipe.errors import StepError
from mlpipe.tracking import secrets, wandb_mirror
from mlpipe.tracking.artifacts import ArtifactVersion
from mlpipe.tracking.wandb_mirror import (
    AliasPlan,
    Mirror,
    alias_plan,
    matching_version,
    mirror_promotion,
    use_plan,
)
from tests.wandb_records import files_containing, isolate_wandb, offline_runs

ONLINE_KEY = os.environ.get("WANDB_API_KEY")  # read before any fixture hides it
needs_wandb_account = pytest.mark.skipif(not ONLINE_KEY, reason="online W&B test: set WANDB_API_KEY")


@pytest.fixture
def wandb_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    runs = isolate_wandb(tmp_path / "wandb", monkeypatch)
    yield runs
    wandb.teardown()  # the next test starts wandb afresh with its own folders


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- mode ---------------------------------------------------------------------------------------
def test_auto_is_online_with_credentials_and_offline_without() -> None:
    assert wandb_mirror.resolve_mode("auto", has_key=True) == "online"
    assert wandb_mirror.resolve_mode("auto", has_key=False) == "offline"
    assert wandb_mirror.resolve_mode("Offline", has_key=True) == "offline"
    assert wandb_mirror.resolve_mode("disabled", has_key=True) == "disabled"


def test_wandb_own_variables_turn_it_off_or_choose_for_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mirror.resolve_mode("online", has_key=True) == "disabled"
    assert wandb_mirror.resolve_mode("auto", has_key=True) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mirror.resolve_mode("auto", has_key=True) == "offline"
    assert wandb_mirror.resolve_mode("online", has_key=True) == "online"  # the config named one
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert wandb_mirror.resolve_mode("auto", has_key=True) == "offline"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_DISABLED", "true")
    assert wandb_mirror.resolve_mode("offline", has_key=False) == "disabled"


def test_unknown_mode_is_one_line_naming_the_key() -> None:
    with pytest.raises(StepError, match=r"tracking.wandb.mode is 'sometimes'; expected one of auto, online"):
        wandb_mirror.resolve_mode("sometimes", has_key=False)


def test_credentials_come_from_the_environment_or_wandb_login_netrc(wandb_runs: Path) -> None:
    assert wandb_mirror.api_key() is None
    netrc_file = Path(os.environ["NETRC"])
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password " + "n" * 40 + "\n")
    netrc_file.chmod(0o600)
    assert wandb_mirror.api_key() == "n" * 40
    os.environ["WANDB_API_KEY"] = "e" * 40
    assert wandb_mirror.api_key() == "e" * 40


# -- fail fast ----------------------------------------------------------------------------------
def test_online_without_a_key_fails_with_one_line() -> None:
    with pytest.raises(StepError, match="no W&B API key is configured; log in with `wandb login`") as e:
        wandb_mirror.check_online(None)
    assert "\n" not in str(e.value)


def test_online_without_network_fails_fast_with_one_line() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(StepError, match=f"cannot reach W&B at {url}") as e:
        wandb_mirror.check_online("k" * 40, url, timeout=5)
    assert "\n" not in str(e.value) and "k" * 40 not in str(e.value)


# -- online decisions (what calls are made), without the network --------------------------------
def test_the_version_with_the_same_content_is_the_one_used() -> None:
    versions = [("v0", "aaa"), ("v1", "bbb"), ("v2", "ccc")]
    assert matching_version("bbb", versions) == "v1"
    assert matching_version("zzz", versions) is None
    assert use_plan("online", "v1") == "v1"
    assert use_plan("online", None) is None  # produced while W&B was off: nothing to point at
    assert use_plan("offline", "v1") is None  # W&B refuses use_artifact offline


def test_alias_moves_in_place_online_and_by_relogging_offline() -> None:
    assert alias_plan("online", "v3") == AliasPlan("add_alias", "v3")  # `latest` stays put
    assert alias_plan("online", None) == AliasPlan("log_with_alias")
    assert alias_plan("offline", None) == AliasPlan("log_with_alias")  # dedup by digest at sync
    assert alias_plan("disabled", "v3") == AliasPlan("none")


# -- secrets ------------------------------------------------------------------------------------
def test_secret_keys_and_values_are_never_loggable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-0123456789")
    monkeypatch.setenv("WANDB_API_KEY", "w" * 40)
    config = {
        "source": "https://host/data.csv?t=tok-0123456789",
        "db": {"password": "hunter22", "port": 5432, "hosts": ["a", "w" * 40]},
        "api_key": "x",
        "size": 0.2,
    }
    assert secrets.loggable(config) == {
        "source": "https://host/data.csv?t=***",
        "db.port": 5432,
        "db.hosts": ["a", "***"],
        "size": 0.2,
    }
    assert secrets.scrub_tree({"aws_secret": "s", "nested": {"url": "tok-0123456789"}}) == {
        "nested": {"url": "***"}
    }


def test_log_lines_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "hunter22")
    record = logging.LogRecord("step", logging.INFO, __file__, 1, "connecting with %s", ("hunter22",), None)
    assert secrets.ScrubFilter().filter(record)
    assert record.getMessage() == "connecting with ***"


# -- real wandb, offline ------------------------------------------------------------------------
def version_of(path: Path, name: str = "model_export", digest: str = "d" * 64) -> ArtifactVersion:
    return ArtifactVersion(
        name=name,
        version=0,
        digest=digest,
        run_id="r",
        file="",
        type="model_export",
        description="a model",
        metadata={"flavor": "sklearn"},
    )


def test_disabled_mirror_writes_nothing(wandb_runs: Path, tmp_path: Path) -> None:
    mirror = Mirror.start("train", {"a": 1}, "run0", "project")  # no MLPIPE_WANDB_MODE: off
    assert not mirror.enabled
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"123")
    mirror.log_metrics({"mae": 1.0})
    mirror.log_artifact("model_export", model, "model_export", "d", {})
    mirror_promotion(version_of(model), model, "prod", mirror)
    mirror.finish(failed=False)
    assert not (tmp_path / "wandb").exists() or not any((tmp_path / "wandb").rglob("*.*"))


def test_offline_run_holds_config_metrics_plots_artifacts_and_aliases(
    wandb_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_PROJECT", "nyc")
    monkeypatch.setenv("WANDB_RUN_GROUP", "exp1")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"weights")
    mirror = Mirror.start(
        "train", {"val_size": 0.2, "nested": {"depth": 3}}, "mlflowrun1", "x", mode="offline"
    )
    assert mirror.mode == "offline"
    mirror.log_metrics({"val_mae": 12.5})
    figure = plt.figure()
    plt.plot([1, 2, 3])
    mirror.log_figure(figure, "feature_importance.png")
    mirror.log_artifact(
        "model_export", model, "model_export", "a model", {"flavor": "sklearn"}, ["candidate"]
    )
    mirror_promotion(version_of(model), model, "prod", mirror)
    mirror.finish(failed=False)

    (run,) = offline_runs(wandb_runs)
    assert (run.run_id, run.project, run.group, run.job_type) == ("mlflowrun1", "nyc", "exp1", "train")
    assert run.config["val_size"] == 0.2 and run.config["nested.depth"] == 3
    assert run.summary["val_mae"] == 12.5
    assert run.summary["promoted.prod"] == "model_export:v0"
    assert "plots/feature_importance/_type" in run.history_keys
    first, promoted = run.artifacts
    assert (first.name, first.type, first.description) == ("model_export", "model_export", "a model")
    assert '"flavor": "sklearn"' in first.metadata or '"flavor":"sklearn"' in first.metadata
    assert set(first.aliases) == {"latest", "candidate"}
    assert promoted.digest == first.digest and "prod" in promoted.aliases  # same content: same version
    assert run.exit_code == 0


def test_a_failed_run_is_marked_failed_and_creates_no_version_or_alias(
    wandb_runs: Path, tmp_path: Path
) -> None:
    data = tmp_path / "clean.csv"
    data.write_text("a,b\n1,2\n")
    mirror = Mirror.start("data_check", {}, "mlflowrun2", "nyc", mode="offline")
    mirror.log_metrics({"tests_failed": 1})
    mirror.log_artifact("clean_data", data, "clean_data", "d", {})
    mirror.set_alias(version_of(data, "clean_data"), data, "reference")
    mirror.finish(failed=True, reason="data_check: 1 data test(s) failed")

    (run,) = offline_runs(wandb_runs)
    assert (run.exit_code, run.artifacts) == (1, [])
    assert run.summary["tests_failed"] == 1
    assert run.summary["error"] == "data_check: 1 data test(s) failed"


def test_a_step_never_logs_a_secret_to_mlflow_or_wandb(
    wandb_runs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    experiment_id: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.conftest import NYC_CSV, run_component

    secret, key = "tok-9f8e7d6c5b4a", "k" * 40
    monkeypatch.setenv("MLPIPE_WANDB_MODE", "offline")
    monkeypatch.setenv("MY_SERVICE_TOKEN", secret)
    monkeypatch.setenv("WANDB_API_KEY", key)  # offline: never sent, and never written either
    source = tmp_path / f"share-{secret}" / "listings.csv"  # a secret inside a parameter value
    source.parent.mkdir()
    source.write_bytes(NYC_CSV.read_bytes()[:200_000].rsplit(b"\n", 1)[0] + b"\n")

    code, err = run_component("get_data", ["--source", str(source)], capsys)

    assert code == 0, err
    assert secret not in err and key not in err  # the step's log lines
    client = MlflowClient()
    (run,) = client.search_runs([experiment_id])
    logged = [*run.data.params.values(), *run.data.tags.values(), *map(str, run.data.metrics)]
    assert any("share-***" in value for value in logged)  # the parameter is there, masked
    assert not [v for v in logged if secret in v or key in v]
    (offline,) = offline_runs(wandb_runs)
    assert offline.config["source"].endswith("share-***/listings.csv")
    assert offline.artifact("raw_data").metadata.count("***") >= 1
    for root in (tmp_path / "wandb", Path(run.info.artifact_uri.removeprefix("file://"))):
        assert files_containing(root, secret) == [] and files_containing(root, key) == []
    for database in tmp_path.glob("mlflow.db*"):  # the store itself, write-ahead log included
        assert secret.encode() not in database.read_bytes() and key.encode() not in database.read_bytes()


def test_a_failed_step_ends_its_wandb_run_as_failed(
    wandb_runs: Path, monkeypatch: pytest.MonkeyPatch, experiment_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import run_component

    monkeypatch.setenv("MLPIPE_WANDB_MODE", "offline")
    code, err = run_component("get_data", ["--source", "data/nowhere.csv"], capsys)
    assert code == 1 and "data/nowhere.csv' not found" in err
    (offline,) = offline_runs(wandb_runs)
    assert offline.job_type == "download" and offline.exit_code == 1 and offline.artifacts == []
    assert "not found" in offline.summary["error"]


# -- online only --------------------------------------------------------------------------------
@needs_wandb_account
def test_online_check_accepts_the_key_and_rejects_a_wrong_one() -> None:
    assert wandb_mirror.check_online(ONLINE_KEY) is not None
    with pytest.raises(StepError, match="rejected the API key"):
        wandb_mirror.check_online("0" * 40)


@needs_wandb_account
def test_online_lineage_and_prod_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_wandb(tmp_path / "wandb", monkeypatch)
    monkeypatch.setenv("WANDB_API_KEY", str(ONLINE_KEY))
    monkeypatch.setenv("WANDB_PROJECT", "mlpipe-tests")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(32))  # a new version each time
    suffix = os.urandom(4).hex()
    producer = Mirror.start("train", {}, f"train-{suffix}", "mlpipe-tests", mode="online")
    producer.log_artifact("model_export", model, "model_export", "a model", {})
    producer.finish(failed=False)
    consumer = Mirror.start("test_model", {}, f"test-{suffix}", "mlpipe-tests", mode="online")
    version = version_of(model)
    consumer.use(version, model)
    mirror_promotion(version, model, "prod", consumer)
    consumer.finish(failed=False)
    api = wandb.Api()
    used = api.run(f"{api.default_entity}/mlpipe-tests/test-{suffix}").used_artifacts()
    assert [a.name.split(":")[0] for a in used] == ["model_export"]
    assert "prod" in api.artifact(f"mlpipe-tests/{used[0].name}").aliases
    wandb.teardown()
