#!/usr/bin/env python3
"""Renders the Helm chart with Helm's own template engine and prints the manifests.

  .deps/helm/bin/python scripts/helm-render.py CHART_DIR NAMESPACE ['{"values": "as JSON"}']
  .deps/helm/bin/python scripts/helm-render.py --lint CHART_DIR [NAMESPACE]   (helm lint --strict)

Same output as `helm template sqlite-kube CHART_DIR -n NAMESPACE`: the helm binary is not
on a package registry this project may install from, so this uses Helm's Go SDK compiled
as a library (PyPI `helm-python-sdk`, installed by scripts/test-deps.sh).
"""
import json
import sys

from helm_python import Chart, lint


def main() -> int:
    if sys.argv[1] == "--lint":
        report = lint(sys.argv[2], strict=True, namespace=sys.argv[3] if len(sys.argv) > 3 else "default")
        for m in report.get("messages") or []:
            print(f"{m.get('severity')} {m.get('path')}: {m.get('error')}")
        errors = report.get("errors") or []
        for e in errors:
            print(f"error: {e}")
        # Severity 2 = warning, 3 = error; strict treats warnings as errors.
        bad = errors or [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
        return 1 if bad else 0
    chart_dir, namespace = sys.argv[1], sys.argv[2]
    values = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    chart = Chart.load(chart_dir)
    out = chart.render(values=values, name="sqlite-kube", namespace=namespace, is_install=True)
    for path in sorted(out):
        if path.endswith("NOTES.txt") or not out[path].strip():
            continue
        print(f"---\n# Source: {path}\n{out[path]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
