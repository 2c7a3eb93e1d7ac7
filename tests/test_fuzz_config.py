"""Fuzz targets for the text decoders people write (issue 8): the deployment file, the gateway's edge.yaml and a
rules file. Each real file is mutated at random — lines dropped, doubled or cut short, values replaced by odd ones,
junk inserted — and each loader must answer with its own error naming what is wrong, or a valid result; never
another exception. Bounded for CI by ``ANJU_FUZZ_EXAMPLES`` (a longer hunt: raise it). The payload decoders (SenML,
health, replies, acks, states, register rings) have theirs beside their tests in tests/protocol/."""

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import ConfigError as EdgeConfigError
from edge.config import EdgeConfig, parse_config_text
from hub.config import ConfigError, Deployment, load_deployment
from hub.detection.rules.model import RuleError, RuleSet, _load_text
from hub.edge_config import EdgeTarget, render_edge_config

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "deploy" / "demo" / "deployment.yaml"
RULES = REPO / "hub" / "detection" / "rules" / "defaults.yaml"
EXAMPLES = int(os.environ.get("ANJU_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip

odd_values = st.sampled_from(
    ["", "-1", "0", "1e309", "-0.0", "nan", ".inf", "null", "~", "true", "[", "]", "{", "}", "{a: 1}", "[1, [2]]",
     "'", '"', "*anchor", "&a x", "!!binary aGk=", "0x1F", "2026-02-30", "12:60", "'\t'", "x" * 300, "中文",
     "- - -", "? x", ": y", "%YAML 1.2"]
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """``text`` with one to four random edits of its lines."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["drop", "double", "cut", "value", "junk", "indent"]))
        if edit == "drop":
            del lines[i]
        elif edit == "double":
            lines.insert(i, lines[i])
        elif edit == "cut":
            lines[i] = lines[i][: draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        elif edit == "value" and ":" in lines[i]:
            key, _, _ = lines[i].partition(":")
            lines[i] = f"{key}: {draw(odd_values)}"
        elif edit == "junk":
            lines.insert(i, draw(st.text(max_size=40)))
        else:
            lines[i] = " " * draw(st.integers(0, 7)) + lines[i].lstrip()
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=mutated(DEMO.read_text(encoding="utf-8")))
def test_a_mangled_deployment_file_is_refused_with_a_config_error(text: str) -> None:
    path = _scratch("deployment.yaml", text)
    try:
        result = load_deployment(path, check_secrets=False)
    except ConfigError as exc:
        assert exc.issues and all(issue.render(str(path)) for issue in exc.issues)
    else:
        assert isinstance(result, Deployment)


def _edge_text() -> str:
    deployment = load_deployment(DEMO, check_secrets=False)
    target = EdgeTarget(mqtt_host="127.0.0.1", mqtt_port=1883, outbox=Path("/nonexistent/outbox.sqlite3"))
    return render_edge_config(deployment, "gw-b1", target)


@FUZZ
@given(text=mutated(_edge_text()))
def test_a_mangled_edge_config_is_refused_with_a_config_error(text: str) -> None:
    try:
        result = parse_config_text(text, base_dir=Path("/nonexistent"), source="edge.yaml")
    except EdgeConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(result, EdgeConfig)


@FUZZ
@given(text=mutated(RULES.read_text(encoding="utf-8")))
def test_a_mangled_rules_file_is_refused_with_a_rule_error(text: str) -> None:
    try:
        result = _load_text(text, "rules.yaml")
    except RuleError as exc:
        assert exc.issues and all(issue.render() for issue in exc.issues)
    else:
        assert isinstance(result, RuleSet)


_SCRATCH = Path(tempfile.gettempdir()) / f"anju-fuzz-{os.getpid()}"


def _scratch(name: str, text: str) -> Path:
    """One file rewritten per example (hypothesis runs many examples inside one test call)."""
    _SCRATCH.mkdir(parents=True, exist_ok=True)
    path = _SCRATCH / name
    path.write_text(text, encoding="utf-8")
    return path


def test_what_the_fuzz_found_stays_fixed(tmp_path: Path) -> None:
    """A date that is none, an anchor named twice: each a ConfigError / RuleError, not a crash or a warning."""
    for edit in ("community: 2026-02-30", "grids: &a x\npeople: &a y"):
        path = tmp_path / "deployment.yaml"
        path.write_text(edit + "\n", encoding="utf-8")
        try:
            load_deployment(path, check_secrets=False)
        except ConfigError as exc:
            assert "not valid YAML" in str(exc), edit
        else:
            raise AssertionError(f"accepted: {edit}")
    for edit in ("version: !!timestamp 2020-13-45", "version: &a 1\ntimezone: &a x"):
        try:
            _load_text(edit + "\n", "rules.yaml")
        except RuleError as exc:
            assert "not valid YAML" in str(exc), edit
        else:
            raise AssertionError(f"accepted: {edit}")
