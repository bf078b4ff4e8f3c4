"""WORKER_METRICS_PORT and ``viarah worker --metrics-port/--metrics-host``."""

from __future__ import annotations

import pytest

from viarah.entrypoints.cli.main import build_parser, main
from viarah.settings import load_settings

GOOD = {"VIA_RAH_SECRET_KEY": "a-long-enough-production-secret"}


def test_no_metrics_port_by_default() -> None:
    assert load_settings(GOOD).require_valid().worker_metrics_port is None
    assert load_settings({**GOOD, "WORKER_METRICS_PORT": ""}).worker_metrics_port is None


def test_a_metrics_port_is_read() -> None:
    settings = load_settings({**GOOD, "WORKER_METRICS_PORT": " 9100 "}).require_valid()
    assert settings.worker_metrics_port == 9100


@pytest.mark.parametrize("value", ["abc", "0", "65536", "-1", "91.5"])
def test_a_bad_metrics_port_is_a_problem_naming_the_variable(value: str) -> None:
    settings = load_settings({**GOOD, "WORKER_METRICS_PORT": value})
    assert len(settings.problems) == 1
    assert settings.problems[0].startswith("WORKER_METRICS_PORT: ")
    assert settings.worker_metrics_port is None


def test_the_worker_command_takes_a_metrics_port_and_host() -> None:
    args = build_parser().parse_args(["worker", "--metrics-port", "9100"])
    assert (args.metrics_port, args.metrics_host) == (9100, "127.0.0.1")
    args = build_parser().parse_args(["worker", "--metrics-host", "0.0.0.0"])
    assert (args.metrics_port, args.metrics_host) == (None, "0.0.0.0")


@pytest.mark.parametrize("value", ["0", "70000", "http"])
def test_a_bad_metrics_port_option_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "--metrics-port", value]) == 2
    assert "--metrics-port" in capsys.readouterr().err
