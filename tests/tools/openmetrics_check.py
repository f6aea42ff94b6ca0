"""Reads OpenMetrics text on stdin and parses it with prometheus_client's strict
OpenMetrics parser (the reference Python client's); prints the families as JSON, or the
parser's error on stderr with exit 1. Used by tests/it/metrics.rs."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

try:
    families = [
        {
            "name": f.name,
            "type": f.type,
            "help": f.documentation,
            "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples],
        }
        for f in text_string_to_metric_families(sys.stdin.read())
    ]
except Exception as e:  # the parser raises ValueError and others on bad input
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps(families))
