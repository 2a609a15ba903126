"""Loads CloudFormation/SAM templates for the property tests.

Short-form intrinsics (`!Ref X`, `!Condition C`, `!Sub "..."`, `!GetAtt A.B`, ...) become their
long form (`{"Ref": "X"}`, `{"Condition": "C"}`, `{"Fn::Sub": "..."}`, `{"Fn::GetAtt": ["A", "B"]}`), so a test
reads one shape whichever form the template author used.
"""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


class _Loader(yaml.SafeLoader):
    pass


def _intrinsic(loader, tag_suffix, node):
    name = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _intrinsic)


def load(relative_path):
    """The template at `relative_path` (from the repository root) as plain dicts and lists."""
    with open(ROOT / relative_path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)


def resources_of_type(template, resource_type):
    """{logical id: resource} for every resource of `resource_type`."""
    return {
        name: resource
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def policy_statements(document):
    """The statements of an IAM policy document, always as a list."""
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def as_list(value):
    return value if isinstance(value, list) else [value]


NO_VALUE = {"Ref": "AWS::NoValue"}


def conditions(template, **parameters):
    """{condition name: bool} for a deployment with `parameters` (others at their Default)."""
    values = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
    values.update({name: str(value) for name, value in parameters.items()})
    declared = template.get("Conditions", {})
    decided = {}

    def evaluate(node):
        if isinstance(node, str):
            return node
        ((function, argument),) = node.items()
        if function == "Ref":
            return values[argument]
        if function == "Condition":
            return decide(argument)
        if function == "Fn::Equals":
            left, right = (evaluate(side) for side in argument)
            return left == right
        if function == "Fn::Not":
            return not evaluate(argument[0])
        if function == "Fn::And":
            return all(evaluate(part) for part in argument)
        if function == "Fn::Or":
            return any(evaluate(part) for part in argument)
        raise ValueError(f"cannot evaluate {function}")

    def decide(name):
        if name not in decided:
            decided[name] = bool(evaluate(declared[name]))
        return decided[name]

    return {name: decide(name) for name in declared}


def resolve(value, decided):
    """`value` with each Fn::If on a condition in `decided` ({name: bool}) replaced by the branch
    taken, and AWS::NoValue dropped (NO_VALUE itself when the whole value is dropped). Fn::If on
    other conditions stays as written."""
    if isinstance(value, list):
        items = [resolve(item, decided) for item in value]
        return [item for item in items if item != NO_VALUE]
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            if name in decided:
                return resolve(when_true if decided[name] else when_false, decided)
            return {"Fn::If": [name, resolve(when_true, decided), resolve(when_false, decided)]}
        fields = {key: resolve(item, decided) for key, item in value.items()}
        return {key: item for key, item in fields.items() if item != NO_VALUE}
    return value


def product_metric_names():
    """The metric names the server and the function export (functions/mcp/src/telemetry/metrics.rs)."""
    source = (ROOT / "functions" / "mcp" / "src" / "telemetry" / "metrics.rs").read_text()
    return set(re.findall(r'pub const [A-Z_]+: &str = "(mcp_[a-z_]+)";', source))
