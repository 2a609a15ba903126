"""Loads CloudFormation/SAM templates for the property tests.

Short-form intrinsics (`!Ref X`, `!Sub "..."`, `!GetAtt A.B`, ...) become their long
form (`{"Ref": "X"}`, `{"Fn::Sub": "..."}`, `{"Fn::GetAtt": ["A", "B"]}`), so a test
reads one shape whichever form the template author used.
"""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


class _Loader(yaml.SafeLoader):
    pass


def _intrinsic(loader, tag_suffix, node):
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
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


def product_metric_names():
    """The metric names the server and the function export (functions/mcp/src/telemetry/metrics.rs)."""
    source = (ROOT / "functions" / "mcp" / "src" / "telemetry" / "metrics.rs").read_text()
    return set(re.findall(r'pub const [A-Z_]+: &str = "(mcp_[a-z_]+)";', source))
