"""Detection rules from the standards, as data: YAML rules, per-deployment overrides and the streaming engine.

``default_rules()`` is the shipped rule set (``defaults.yaml``, each rule citing its source); ``resolve_rules``
applies a deployment's ``rules:`` overrides per community, building and sensor; ``RuleEngine`` judges readings,
vectorised across sensors, and returns ``alerts.model.RiskEvent`` values. See each module's docstring.
"""

from hub.detection.rules.context import SensorContext
from hub.detection.rules.engine import RuleEngine
from hub.detection.rules.exposure import DoseCurve
from hub.detection.rules.model import Rule, RuleError, RuleIssue, RuleSet, default_rules, load_rules, parse_rules
from hub.detection.rules.overrides import ResolvedRules, resolve_rules

__all__ = [
    "DoseCurve",
    "ResolvedRules",
    "Rule",
    "RuleEngine",
    "RuleError",
    "RuleIssue",
    "RuleSet",
    "SensorContext",
    "default_rules",
    "load_rules",
    "parse_rules",
    "resolve_rules",
]
