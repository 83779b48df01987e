"""Renders ferry's chart as `helm install` would, for the chart's tests.

    python render.py CHART OUT-DIR VALUES.yaml...
    python render.py --lint CHART VALUES.yaml...

Helm's own Go code does the work (PyPI's helm-python-sdk, through its C
library; no cluster, no network): each values file is read as `helm install
-f` reads it, later files merged over earlier ones, the result is checked
against the chart's values.schema.json, and the templates are rendered for
the release `ferry` in the namespace `teleport`. Each rendered template is
written to OUT-DIR under its file name (templates/tbot.yaml -> tbot.yaml).
On a refusal (the schema, `fail`, `required`) the message goes to stderr on
one line and the exit status is 1; 2 means the renderer itself is missing.
With --lint, `helm lint --strict` with those values: each warning or error
on stderr, one a line, and exit status 1 if there is any.
"""

import os
import sys

try:
    import helm_python as helm
except ImportError as err:
    print(f"helm-python-sdk is not installed for {sys.executable} ({err}): run ./test to install the chart renderer", file=sys.stderr)
    sys.exit(2)

RELEASE = "ferry"
NAMESPACE = "teleport"


def merge(base: dict, over: dict) -> dict:
    """`helm -f a -f b`: maps merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_values(values_files) -> dict:
    values: dict = {}
    for path in values_files:
        with open(path, encoding="utf-8") as f:
            values = merge(values, helm.values_from_yaml(f.read()) or {})
    return values


def lint(chart_dir: str, *values_files: str) -> int:
    report = helm.lint(chart_dir, values=read_values(values_files), strict=True, namespace=NAMESPACE)
    # Helm's severities: 1 information, 2 warning, 3 and above errors.
    problems = [f"{m.get('path')}: {m.get('error')}" for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems += [str(e) for e in report.get("errors") or []]
    for problem in problems:
        print(" ".join(problem.split()), file=sys.stderr)
    return 1 if problems else 0


def main(chart_dir: str, out_dir: str, *values_files: str) -> int:
    try:
        values = read_values(values_files)
        with helm.Chart.load(chart_dir) as chart:
            chart.validate_schema(values)
            manifests = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.HelmError as err:
        print(" ".join(str(err).split()), file=sys.stderr)
        return 1
    os.makedirs(out_dir, exist_ok=True)
    for path, text in manifests.items():
        with open(os.path.join(out_dir, os.path.basename(path)), "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    if sys.argv[1] == "--lint":
        sys.exit(lint(*sys.argv[2:]))
    sys.exit(main(*sys.argv[1:]))
