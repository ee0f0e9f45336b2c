#!/usr/bin/env python3
"""Checks the dashboards and Prometheus rules against the metric catalogue (docs/metrics.md).

What it checks:
  * every dashboard in charts/calanque/dashboards/ is well-formed JSON with schemaVersion 39,
    a `datasource` and a `datacenter` template variable, unique panel ids, every panel on the
    `${datasource}` variable with at least one target, and every target with a PromQL `expr`;
  * every metric name in every PromQL expression (dashboards, template variables, recording and
    alerting rules) is in the catalogue (histograms also as `_bucket`, `_sum`, `_count`), a
    recording rule defined in charts/calanque/files/prometheus/, or one of the few external
    metrics allowed below;
  * every label in a selector of a calanque metric is one the catalogue lists for it (or a
    scrape label, or `le` on a histogram's `_bucket`), and every label in a `by`, `without`,
    `on`, `ignoring` or `group_*` clause exists on the series it applies to (the labels of a
    recording rule are worked out from its expression);
  * every alert has a `severity` of page/ticket/warning, `summary`, `description` and
    `runbook_url` annotations, a runbook_url naming an existing heading of a file in
    docs/runbooks/, an entry in docs/runbooks/README.md, `{{ $labels.x }}` only for labels its
    expression keeps, and, in the rule tests, one case where it fires and one where it stays
    silent.

Usage: scripts/check-dashboards.py [--root DIR] [--emit-promql-rules FILE]
           check the tree (exit 1 on any failure); FILE gets every dashboard expression as a
           rule file, so that `promtool check rules FILE` parses them with Prometheus' parser
       scripts/check-dashboards.py --self-test
           show that the checks reject bad input

Only the Python standard library and PyYAML.
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import re
import shutil
import sys
import tempfile

import yaml

# Labels every series carries through the scrape configuration (docs/metrics.md).
SCRAPE_LABELS = frozenset({"job", "instance", "namespace", "pod", "datacenter", "service"})
# Metrics from outside calanque the rules and dashboards may use: Prometheus' own `up` and
# etcd's leader gauge (docs/metrics.md names both for the quorum alerts). NATS quorum is read
# from `up` of the NATS scrape jobs, so no NATS exporter metric is needed.
EXTERNAL_METRICS = frozenset({"up", "etcd_server_has_leader"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
SEVERITIES = frozenset({"page", "ticket", "warning"})

RULES_DIR = "charts/calanque/files/prometheus"
DASHBOARDS_DIR = "charts/calanque/dashboards"
RUNBOOKS_DIR = "docs/runbooks"
CATALOGUE = "docs/metrics.md"


class Any_:
    """The label set of a series we know nothing about (an external metric): anything goes."""

    def __repr__(self) -> str:
        return "ANY"


ANY = Any_()
SCALAR = frozenset()  # numbers and strings: no labels


# ---------------------------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------------------------


class Catalogue:
    def __init__(self, metrics: dict[str, tuple[str, frozenset[str]]]):
        # name -> (type, labels)
        self.metrics = metrics

    @classmethod
    def parse(cls, text: str) -> "Catalogue":
        metrics: dict[str, tuple[str, frozenset[str]]] = {}
        in_table = False
        for line in text.splitlines():
            if line.startswith("## "):
                in_table = line.strip() == "## Catalogue"
                continue
            if not in_table or not line.startswith("|"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 3:
                continue
            name = re.fullmatch(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`", cells[0])
            if not name:
                continue  # the header and its separator
            kind = cells[1].split()[0] if cells[1] else ""
            # Labels are the backquoted words outside parentheses; inside them are values.
            label_cell = re.sub(r"\([^)]*\)", "", cells[2])
            labels = frozenset(re.findall(r"`([a-zA-Z_][a-zA-Z0-9_]*)`", label_cell))
            metrics[name.group(1)] = (kind, labels)
        if not metrics:
            raise ValueError("no metric found in the catalogue table")
        return cls(metrics)

    def resolve(self, name: str) -> tuple[str, frozenset[str]] | None:
        """The catalogue entry a series name belongs to, and the labels it may carry."""
        if name in self.metrics:
            kind, labels = self.metrics[name]
            return name, labels | SCRAPE_LABELS
        for suffix in HISTOGRAM_SUFFIXES:
            base = name[: -len(suffix)]
            if name.endswith(suffix) and self.metrics.get(base, ("",))[0] == "histogram":
                extra = {"le"} if suffix == "_bucket" else set()
                return base, self.metrics[base][1] | SCRAPE_LABELS | extra
        return None


# ---------------------------------------------------------------------------------------------
# A small PromQL parser: enough structure to find metric names, selector labels and the labels
# of grouping and matching clauses, and to work out which labels an expression's result keeps.
# ---------------------------------------------------------------------------------------------

AGGREGATIONS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk "
    "limit_ratio".split()
)
KEEP_INNER_LABELS = frozenset({"topk", "bottomk", "limitk", "limit_ratio"})
SET_OPS = frozenset({"and", "or", "unless"})
COMPARISONS = frozenset({"==", "!=", "<", ">", "<=", ">="})
PRECEDENCE = {
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3, "!=": 3, "<": 3, ">": 3, "<=": 3, ">=": 3,
    "+": 4, "-": 4,
    "*": 5, "/": 5, "%": 5, "atan2": 5,
    "^": 6,
}
KEYWORD_LITERALS = frozenset({"inf", "nan"})

TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+(?![a-zA-Z0-9_]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*|:[a-zA-Z_][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^=<>(){}\[\],:@])
    """,
    re.VERBOSE,
)

# Grafana's variables: interval ones stand for a duration, the others (inside label values,
# normally) for anything.
GRAFANA_INTERVAL_RE = re.compile(r"\$__(?:rate_interval|interval|range)\b|\$\{__(?:rate_interval|interval|range)\}")
GRAFANA_VAR_RE = re.compile(r"\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*|\[\[[a-zA-Z0-9_]+\]\]")


class PromQLError(ValueError):
    pass


def tokenize(expr: str) -> list[tuple[str, str]]:
    expr = GRAFANA_INTERVAL_RE.sub("5m", expr)
    expr = GRAFANA_VAR_RE.sub("5m", expr)  # inside a string it stays a string
    tokens = []
    pos = 0
    while pos < len(expr):
        m = TOKEN_RE.match(expr, pos)
        if not m:
            raise PromQLError(f"cannot read {expr[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue
        tokens.append((kind, m.group(kind)))
    tokens.append(("eof", ""))
    return tokens


class Parser:
    def __init__(self, expr: str):
        self.tokens = tokenize(expr)
        self.i = 0

    def peek(self, k: int = 0) -> tuple[str, str]:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def next(self) -> tuple[str, str]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        tok = self.next()
        if tok[1] != value:
            raise PromQLError(f"expected {value!r}, got {tok[1]!r}")

    def parse(self):
        node = self.expression(0)
        if self.peek()[0] != "eof":
            raise PromQLError(f"unexpected {self.peek()[1]!r}")
        return node

    def binary_op(self) -> str | None:
        kind, value = self.peek()
        if kind == "op" and value in PRECEDENCE:
            return value
        if kind == "ident" and value.lower() in PRECEDENCE:
            return value.lower()
        return None

    def expression(self, min_prec: int):
        lhs = self.unary()
        while True:
            op = self.binary_op()
            if op is None or PRECEDENCE[op] < min_prec:
                return lhs
            self.next()
            bool_ = False
            if self.peek()[1] == "bool":
                self.next()
                bool_ = True
            matching = None
            group = None
            if self.peek()[1] in ("on", "ignoring"):
                matching = (self.next()[1], self.label_list())
                if self.peek()[1] in ("group_left", "group_right"):
                    side = self.next()[1]
                    labels = self.label_list() if self.peek()[1] == "(" else []
                    group = (side, labels)
            next_prec = PRECEDENCE[op] if op == "^" else PRECEDENCE[op] + 1
            rhs = self.expression(next_prec)
            lhs = {"t": "bin", "op": op, "bool": bool_, "lhs": lhs, "rhs": rhs,
                   "matching": matching, "group": group}

    def unary(self):
        if self.peek()[1] in ("-", "+"):
            self.next()
            return {"t": "unary", "expr": self.unary()}
        return self.postfix(self.primary())

    def postfix(self, node):
        while True:
            value = self.peek()[1]
            if value == "[":
                self.next()
                self.duration()
                if self.peek()[1] == ":":
                    self.next()
                    if self.peek()[1] != "]":
                        self.duration()
                self.expect("]")
                node = {"t": "range", "expr": node}
            elif value == "offset":
                self.next()
                if self.peek()[1] == "-":
                    self.next()
                self.duration()
            elif value == "@":
                self.next()
                tok = self.next()
                if tok[0] == "ident":  # start() / end()
                    self.expect("(")
                    self.expect(")")
            else:
                return node

    def duration(self) -> None:
        tok = self.next()
        if tok[0] not in ("duration", "number"):
            raise PromQLError(f"expected a duration, got {tok[1]!r}")

    def label_list(self) -> list[str]:
        self.expect("(")
        labels = []
        while self.peek()[1] != ")":
            kind, value = self.next()
            if kind not in ("ident", "string"):
                raise PromQLError(f"expected a label name, got {value!r}")
            labels.append(value.strip("\"'`"))
            if self.peek()[1] == ",":
                self.next()
        self.expect(")")
        return labels

    def matchers(self) -> list[tuple[str, str, str]]:
        self.expect("{")
        found = []
        while self.peek()[1] != "}":
            kind, name = self.next()
            if kind == "string":  # {"metric_name"} (Prometheus 3 quoted names)
                found.append(("__name__", "=", name[1:-1]))
            else:
                if kind != "ident":
                    raise PromQLError(f"expected a label name, got {name!r}")
                op = self.next()[1]
                if op not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"expected a matcher operator, got {op!r}")
                kind, value = self.next()
                if kind != "string":
                    raise PromQLError(f"expected a string, got {value!r}")
                found.append((name, op, value[1:-1]))
            if self.peek()[1] == ",":
                self.next()
        self.expect("}")
        return found

    def primary(self):
        kind, value = self.peek()
        if kind in ("number", "duration"):
            self.next()
            return {"t": "scalar"}
        if kind == "string":
            self.next()
            return {"t": "string", "value": value[1:-1]}
        if value == "(":
            self.next()
            node = self.expression(0)
            self.expect(")")
            return node
        if value == "{":
            return {"t": "sel", "name": None, "matchers": self.matchers()}
        if kind != "ident":
            raise PromQLError(f"unexpected {value!r}")
        self.next()
        lower = value.lower()
        if lower in KEYWORD_LITERALS:
            return {"t": "scalar"}
        if lower in AGGREGATIONS and self.peek()[1] in ("(", "by", "without"):
            return self.aggregation(lower)
        if self.peek()[1] == "(":
            return self.call(value)
        node = {"t": "sel", "name": value, "matchers": []}
        if self.peek()[1] == "{":
            node["matchers"] = self.matchers()
        return node

    def aggregation(self, op: str):
        grouping = None
        if self.peek()[1] in ("by", "without"):
            grouping = (self.next()[1], self.label_list())
        self.expect("(")
        args = [self.expression(0)]
        while self.peek()[1] == ",":
            self.next()
            args.append(self.expression(0))
        self.expect(")")
        if self.peek()[1] in ("by", "without"):
            if grouping is not None:
                raise PromQLError("two grouping clauses")
            grouping = (self.next()[1], self.label_list())
        return {"t": "agg", "op": op, "grouping": grouping, "param": args[:-1], "expr": args[-1]}

    def call(self, name: str):
        self.expect("(")
        args = []
        while self.peek()[1] != ")":
            args.append(self.expression(0))
            if self.peek()[1] == ",":
                self.next()
        self.expect(")")
        return {"t": "call", "name": name, "args": args}


def parse_promql(expr: str):
    return Parser(expr).parse()


def walk(node):
    yield node
    for key in ("expr", "lhs", "rhs"):
        if isinstance(node.get(key), dict):
            yield from walk(node[key])
    for child in node.get("args", []) + node.get("param", []):
        yield from walk(child)


def metric_names(expr: str) -> list[str]:
    """Every metric name an expression selects (for the report and the self-test)."""
    names = []
    for node in walk(parse_promql(expr)):
        if node["t"] == "sel":
            names.append(selector_name(node) or "{…}")
    return names


def selector_name(node) -> str | None:
    if node["name"]:
        return node["name"]
    for label, op, value in node["matchers"]:
        if label == "__name__" and op == "=":
            return value
    return None


def union(a, b):
    if a is ANY or b is ANY:
        return ANY
    return frozenset(a) | frozenset(b)


# ---------------------------------------------------------------------------------------------
# Checking expressions
# ---------------------------------------------------------------------------------------------


class Checker:
    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.recorded: dict[str, object] = {}  # recording rule -> label set (or ANY)
        self.errors: list[str] = []
        self.expressions = 0
        self.dashboard_exprs: list[tuple[str, str]] = []  # (where, expr) for --emit-promql-rules

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    # Labels of a selector's series (None when the name is unknown).
    def series_labels(self, name: str):
        resolved = self.catalogue.resolve(name)
        if resolved:
            return resolved[1]
        if name in self.recorded:
            return self.recorded[name]
        if name in EXTERNAL_METRICS:
            return ANY
        return None

    def labels_of(self, node, where: str, report: bool):
        """The labels the result of `node` keeps; with report, log what is wrong on the way."""
        t = node["t"]
        if t in ("scalar", "string"):
            return SCALAR
        if t in ("range", "unary"):
            return self.labels_of(node["expr"], where, report)
        if t == "sel":
            return self.selector(node, where, report)
        if t == "agg":
            inner = self.labels_of(node["expr"], where, report)
            for param in node["param"]:
                self.labels_of(param, where, report)
            if node["op"] in KEEP_INNER_LABELS:
                result = inner
            elif node["grouping"] is None:
                result = frozenset()
            else:
                kind, labels = node["grouping"]
                self.check_available(labels, inner, f"{node['op']} {kind}", where, report)
                if kind == "by":
                    result = frozenset(labels)
                else:
                    result = inner if inner is ANY else inner - set(labels)
            if node["op"] == "count_values" and node["param"]:
                param = node["param"][0]
                if param["t"] == "string" and result is not ANY:
                    result = result | {param["value"]}
            return result
        if t == "call":
            arg_labels = [self.labels_of(a, where, report) for a in node["args"]]
            name = node["name"]
            vectors = [l for l in arg_labels if l is ANY or l]
            if name in ("label_replace", "label_join") and len(node["args"]) > 1:
                dst = node["args"][1]
                base = arg_labels[0]
                if base is ANY or dst["t"] != "string":
                    return ANY
                return base | {dst["value"]}
            if name == "histogram_quantile" and len(arg_labels) == 2:
                base = arg_labels[1]
                return base if base is ANY else base - {"le"}
            if name in ("vector", "time", "scalar", "pi", "minute", "hour", "day_of_week",
                        "day_of_month", "days_in_month", "month", "year") and not vectors:
                return frozenset()
            if name in ("absent", "absent_over_time"):
                return ANY
            return vectors[0] if vectors else frozenset()
        if t == "bin":
            lhs = self.labels_of(node["lhs"], where, report)
            rhs = self.labels_of(node["rhs"], where, report)
            both = union(lhs, rhs)
            if node["matching"]:
                kind, labels = node["matching"]
                self.check_available(labels, both, kind, where, report)
            if node["group"]:
                side, labels = node["group"]
                other = rhs if side == "group_left" else lhs
                self.check_available(labels, other, side, where, report)
            op = node["op"]
            if op == "or":
                return both
            if op in SET_OPS:
                return lhs
            if lhs == SCALAR and rhs is not ANY:
                return rhs
            if rhs == SCALAR or (op in COMPARISONS and not node["bool"]):
                return lhs
            if node["group"]:
                side, labels = node["group"]
                kept = lhs if side == "group_left" else rhs
                return union(kept, frozenset(labels))
            if node["matching"]:
                kind, labels = node["matching"]
                if kind == "on":
                    return frozenset(labels)
                return lhs if lhs is ANY else lhs - set(labels)
            return lhs
        raise AssertionError(t)

    def selector(self, node, where: str, report: bool):
        name = selector_name(node)
        if name is None:
            if report:
                self.error(where, "a selector without a plain metric name cannot be checked")
            return ANY
        labels = self.series_labels(name)
        if labels is None:
            if report:
                self.error(where, f"unknown metric {name!r}: not in {CATALOGUE}'s catalogue, "
                                  "not a recording rule, not an allowed external metric")
            return ANY
        if labels is not ANY and report:
            for label, _, _ in node["matchers"]:
                if label != "__name__" and label not in labels:
                    self.error(where, f"label {label!r} is not a label of {name} "
                                      f"(it has: {', '.join(sorted(labels))})")
        return labels

    def check_available(self, labels, available, clause: str, where: str, report: bool) -> None:
        if not report or available is ANY:
            return
        for label in labels:
            if label not in available:
                self.error(where, f"`{clause} ({label})`: no series under it has label "
                                  f"{label!r} (they have: {', '.join(sorted(available)) or 'none'})")

    def check_expr(self, expr: str, where: str):
        """Checks one expression; returns the labels of its result."""
        self.expressions += 1
        try:
            tree = parse_promql(expr)
        except PromQLError as e:
            self.error(where, f"cannot parse PromQL {expr!r}: {e}")
            return ANY
        return self.labels_of(tree, where, report=True)


# ---------------------------------------------------------------------------------------------
# Rules, runbooks and rule tests
# ---------------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def runbook_anchors(path: str) -> set[str]:
    anchors = set()
    with open(path, encoding="utf-8") as f:
        in_code = False
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
            m = re.match(r"#{1,6}\s+(.*)", line)
            if m and not in_code:
                anchors.add(github_anchor(m.group(1)))
    return anchors


def load_rule_groups(checker: Checker, rule_docs: dict[str, dict]) -> list[tuple[str, dict]]:
    """All rules as (file, rule); records the recording rules' names and label sets."""
    rules = []
    for path, doc in rule_docs.items():
        if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
            checker.error(path, "not a Prometheus rule file (no `groups` list)")
            continue
        for group in doc["groups"]:
            for rule in group.get("rules") or []:
                rules.append((path, rule))
    recording = [(p, r) for p, r in rules if "record" in r]
    for _, rule in recording:
        checker.recorded.setdefault(rule["record"], ANY)
    # Label sets depend on each other across groups: iterate to a fixed point.
    for _ in range(10):
        changed = False
        for _, rule in recording:
            try:
                labels = checker.labels_of(parse_promql(str(rule["expr"])), "", report=False)
            except PromQLError:
                labels = ANY
            if labels != checker.recorded[rule["record"]]:
                checker.recorded[rule["record"]] = labels
                changed = True
        if not changed:
            break
    return rules


def check_rules(checker: Checker, root: str, rule_docs: dict[str, dict],
                test_docs: dict[str, dict], runbook_index: str | None) -> int:
    rules = load_rule_groups(checker, rule_docs)
    alerts = {}
    for path, rule in rules:
        name = rule.get("record") or rule.get("alert")
        where = f"{path}: {name}"
        if not name or "expr" not in rule:
            checker.error(path, f"rule without a name or an expr: {rule}")
            continue
        labels = checker.check_expr(str(rule["expr"]), where)
        if "record" in rule:
            if not re.fullmatch(r"[a-zA-Z_]+:[a-zA-Z0-9_]+:[a-zA-Z0-9_]+", name):
                checker.error(where, "a recording rule is named level:metric:operations")
            continue
        alerts[name] = rule
        severity = (rule.get("labels") or {}).get("severity")
        if severity not in SEVERITIES:
            checker.error(where, f"severity {severity!r}: must be one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations") or {}
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key, "")).strip():
                checker.error(where, f"no {key} annotation")
        for text in list(annotations.values()) + list((rule.get("labels") or {}).values()):
            for label in re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", str(text)):
                if labels is not ANY and label not in labels:
                    checker.error(where, f"template uses $labels.{label}, which the expression "
                                         f"does not keep (it keeps: {', '.join(sorted(labels)) or 'none'})")
        url = str(annotations.get("runbook_url", ""))
        if url:
            file, _, anchor = url.partition("#")
            if not file.startswith(RUNBOOKS_DIR + "/"):
                checker.error(where, f"runbook_url {url!r} is not under {RUNBOOKS_DIR}/")
            elif not os.path.isfile(os.path.join(root, file)):
                checker.error(where, f"runbook_url {url!r}: no such file")
            elif not anchor or anchor not in runbook_anchors(os.path.join(root, file)):
                checker.error(where, f"runbook_url {url!r}: no heading with that anchor")
        if runbook_index is not None and name not in runbook_index:
            checker.error(where, f"not listed in {RUNBOOKS_DIR}/README.md")

    # Every alert: a case where it fires and one where it stays silent.
    firing, silent = set(), set()
    for path, doc in test_docs.items():
        for test in (doc or {}).get("tests") or []:
            for case in test.get("alert_rule_test") or []:
                (firing if case.get("exp_alerts") else silent).add(case.get("alertname"))
    for name in alerts:
        if name not in firing:
            checker.error(f"{RULES_DIR}/tests", f"{name}: no test where it fires")
        if name not in silent:
            checker.error(f"{RULES_DIR}/tests", f"{name}: no test where it stays silent")
    return len(rules)


# ---------------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------------


def all_panels(panels):
    for panel in panels or []:
        yield panel
        yield from all_panels(panel.get("panels"))


def datasource_is_variable(ds) -> bool:
    if isinstance(ds, str):
        return ds in ("${datasource}", "$datasource")
    return isinstance(ds, dict) and ds.get("uid") in ("${datasource}", "$datasource")


def check_dashboard(checker: Checker, name: str, text: str, uids: dict[str, str]) -> int:
    try:
        dash = json.loads(text)
    except json.JSONDecodeError as e:
        checker.error(name, f"not well-formed JSON: {e}")
        return 0
    if not isinstance(dash, dict):
        checker.error(name, "not a JSON object")
        return 0
    if dash.get("schemaVersion") != 39:
        checker.error(name, f"schemaVersion {dash.get('schemaVersion')!r}, expected 39")
    for key in ("title", "uid"):
        if not dash.get(key):
            checker.error(name, f"no {key}")
    uid = dash.get("uid")
    if uid in uids:
        checker.error(name, f"uid {uid!r} also used by {uids[uid]}")
    uids[uid] = name

    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list") or []}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        checker.error(name, "no `datasource` template variable of type datasource (prometheus)")
    if "datacenter" not in variables:
        checker.error(name, "no `datacenter` template variable")
    for var in variables.values():
        if var.get("type") != "query":
            continue
        where = f"{name}: variable {var.get('name')}"
        if not datasource_is_variable(var.get("datasource")):
            checker.error(where, "datasource is not ${datasource}")
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        query = str(query or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", query)
        if m:
            labels = checker.check_expr(m.group(1), where)
            checker.check_available([m.group(2)], labels, "label_values", where, True)
        elif re.fullmatch(r"\s*query_result\((.*)\)\s*", query):
            checker.check_expr(re.fullmatch(r"\s*query_result\((.*)\)\s*", query).group(1), where)
        else:
            checker.error(where, f"query {query!r}: expected label_values(…) or query_result(…)")

    ids = {}
    count = 0
    for panel in all_panels(dash.get("panels")):
        pid = panel.get("id")
        title = panel.get("title", "?")
        where = f"{name}: panel {pid} {title!r}"
        if pid is None:
            checker.error(where, "no id")
        elif pid in ids:
            checker.error(where, f"id {pid} also used by panel {ids[pid]!r}")
        else:
            ids[pid] = title
        if "gridPos" not in panel:
            checker.error(where, "no gridPos")
        if panel.get("type") == "row":
            continue
        count += 1
        if not datasource_is_variable(panel.get("datasource")):
            checker.error(where, "datasource is not ${datasource}")
        targets = panel.get("targets") or []
        if not targets:
            checker.error(where, "no target")
        for target in targets:
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                checker.error(where, f"target {target.get('refId', '?')} has no expr")
                continue
            if "datasource" in target and not datasource_is_variable(target["datasource"]):
                checker.error(where, f"target {target.get('refId', '?')}: datasource is not ${{datasource}}")
            checker.check_expr(expr, f"{where} target {target.get('refId', '?')}")
            checker.dashboard_exprs.append((f"{where} target {target.get('refId', '?')}", expr))
    return count


# ---------------------------------------------------------------------------------------------
# Driving it
# ---------------------------------------------------------------------------------------------


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, for Prometheus' own parser."""
    expr = GRAFANA_INTERVAL_RE.sub("5m", expr)
    return GRAFANA_VAR_RE.sub(".*", expr)


def emit_promql_rules(checker: Checker, path: str) -> None:
    """Writes every dashboard expression as a recording rule, so that `promtool check rules`
    parses it with Prometheus' own PromQL parser (this script's parser is a subset)."""
    rules = [{"record": f"dashboard_check:expr_{i}:check", "expr": grafana_to_promql(expr),
              "labels": {"source": where}}
             for i, (where, expr) in enumerate(checker.dashboard_exprs)]
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard-expressions", "rules": rules}]}, f,
                       sort_keys=False, allow_unicode=True, width=1000)


def check_tree(root: str, emit: str | None = None) -> int:
    checker = Checker(Catalogue.parse(read(os.path.join(root, CATALOGUE))))
    rule_files = sorted(glob.glob(os.path.join(root, RULES_DIR, "*.yaml")))
    test_files = sorted(glob.glob(os.path.join(root, RULES_DIR, "tests", "*.yaml")))
    dashboards = sorted(glob.glob(os.path.join(root, DASHBOARDS_DIR, "*.json")))
    if not rule_files:
        checker.error(RULES_DIR, "no rule file")
    if not dashboards:
        checker.error(DASHBOARDS_DIR, "no dashboard")
    rel = lambda p: os.path.relpath(p, root)  # noqa: E731
    rule_docs = {rel(p): yaml.safe_load(read(p)) for p in rule_files}
    test_docs = {rel(p): yaml.safe_load(read(p)) for p in test_files}
    index_path = os.path.join(root, RUNBOOKS_DIR, "README.md")
    index = read(index_path) if os.path.isfile(index_path) else None
    if index is None:
        checker.error(RUNBOOKS_DIR, "no README.md index")
    n_rules = check_rules(checker, root, rule_docs, test_docs, index)
    uids: dict[str, str] = {}
    n_panels = sum(check_dashboard(checker, rel(p), read(p), uids) for p in dashboards)
    if emit:
        emit_promql_rules(checker, emit)
    for e in checker.errors:
        print(f"FAIL {e}")
    status = "FAILED" if checker.errors else "ok"
    print(f"check-dashboards: {len(dashboards)} dashboards ({n_panels} panels), {n_rules} rules, "
          f"{checker.expressions} PromQL expressions checked against {CATALOGUE}: "
          f"{len(checker.errors)} failures, {status}")
    return 1 if checker.errors else 0


# A dashboard the checker must accept; the self-test breaks it one way at a time.
SELF_TEST_DASHBOARD = {
    "title": "self-test",
    "uid": "calanque-self-test",
    "schemaVersion": 39,
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus"},
        {"name": "datacenter", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "query": {"query": "label_values(calanque_build_info, datacenter)"}},
    ]},
    "panels": [
        {"id": 1, "type": "row", "title": "row", "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}},
        {"id": 2, "type": "timeseries", "title": "set-ups", "gridPos": {"h": 8, "w": 12, "x": 0, "y": 1},
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "${datasource}"},
                      "expr": 'sum by (result, datacenter) (rate(calanque_call_setups_total{datacenter=~"$datacenter"}[$__rate_interval]))'}]},
        {"id": 3, "type": "timeseries", "title": "latency", "gridPos": {"h": 8, "w": 12, "x": 12, "y": 1},
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "targets": [{"refId": "A", "expr": 'histogram_quantile(0.99, sum by (le) (rate(calanque_call_setup_seconds_bucket[5m])))'},
                     {"refId": "B", "expr": 'calanque:sli_error_ratio:rate5m'}]},
    ],
}

SELF_TEST_RULES = {
    "rules.yaml": {"groups": [{"name": "g", "rules": [
        {"record": "calanque:sli_error_ratio:rate5m",
         "expr": "1 - sum(rate(calanque_call_setups_total{result=\"answered\"}[5m])) / sum(rate(calanque_call_setups_total[5m]))"},
        {"record": "calanque_datacenter:ready:sum",
         "expr": "sum by (datacenter) (calanque_ready)"},
        {"alert": "SelfTestAlert", "expr": "calanque_ready == 0",
         "labels": {"severity": "ticket"},
         "annotations": {"summary": "{{ $labels.pod }} is not ready", "description": "d",
                         "runbook_url": "docs/runbooks/services.md#calanqueservicenotready"}},
    ]}]},
}
SELF_TEST_TESTS = {"tests/t.yaml": {"tests": [{"alert_rule_test": [
    {"alertname": "SelfTestAlert", "exp_alerts": [{"exp_labels": {}}]},
    {"alertname": "SelfTestAlert", "exp_alerts": []},
]}]}}


def self_test(root: str) -> int:
    # The real catalogue; a runbook of its own, so that the self-test does not depend on the
    # tree's runbooks.
    catalogue = Catalogue.parse(read(os.path.join(root, CATALOGUE)))
    scratch = tempfile.mkdtemp(prefix="check-dashboards-")
    os.makedirs(os.path.join(scratch, RUNBOOKS_DIR))
    with open(os.path.join(scratch, RUNBOOKS_DIR, "services.md"), "w", encoding="utf-8") as f:
        f.write("# Services\n\n## CalanqueServiceNotReady\n\nWhat to do.\n")
    try:
        return self_test_in(catalogue, scratch)
    finally:
        shutil.rmtree(scratch)


def self_test_in(catalogue: Catalogue, root: str) -> int:
    failures = []

    def run(dashboard=None, rules=None, tests=None, index="SelfTestAlert"):
        checker = Checker(catalogue)
        check_rules(checker, root, rules or SELF_TEST_RULES, tests or SELF_TEST_TESTS, index)
        check_dashboard(checker, "self-test.json",
                        dashboard if isinstance(dashboard, str) else json.dumps(dashboard or SELF_TEST_DASHBOARD), {})
        return checker.errors

    def expect(description, errors, needle):
        ok = (not errors) if needle is None else any(needle in e for e in errors)
        print(f"  {'ok  ' if ok else 'FAIL'} {description}"
              + ("" if ok else f" (errors: {errors or 'none'})"))
        if not ok:
            failures.append(description)

    def broken(mutate):
        dash = copy.deepcopy(SELF_TEST_DASHBOARD)
        mutate(dash)
        return dash

    def rules_with(expr=None, annotations=None, labels=None):
        rules = copy.deepcopy(SELF_TEST_RULES)
        alert = rules["rules.yaml"]["groups"][0]["rules"][2]
        if expr is not None:
            alert["expr"] = expr
        if annotations is not None:
            alert["annotations"].update(annotations)
        if labels is not None:
            alert["labels"] = labels
        return rules

    def set_expr(expr, panel=1, target=0):
        return broken(lambda d: d["panels"][panel]["targets"][target].__setitem__("expr", expr))

    print("check-dashboards self-test:")
    # The parser finds the names.
    names = metric_names('sum by (le) (rate(a_bucket{x="1"}[5m])) / on (le) group_left b + '
                         'max_over_time(c[1h:5m] offset 5m) or vector(0) > bool 1')
    expect("metric names found in a complex expression",
           [] if names == ["a_bucket", "b", "c"] else [f"got {names}"], None)
    expect("a valid dashboard and rule set pass", run(), None)
    expect("an unknown metric in a dashboard is rejected",
           run(set_expr('sum(rate(calanque_calls_dropped_total[5m]))')), "unknown metric 'calanque_calls_dropped_total'")
    expect("an unknown metric in a template variable is rejected",
           run(broken(lambda d: d["templating"]["list"][1]["query"].__setitem__(
               "query", "label_values(calanque_nope, datacenter)"))), "unknown metric 'calanque_nope'")
    expect("a misspelt recording rule is rejected",
           run(set_expr('calanque:sli_error_ratio:rate6m')), "unknown metric")
    expect("a label the catalogue does not list for the metric is rejected",
           run(set_expr('calanque_ready{method="INVITE"}')), "label 'method' is not a label of calanque_ready")
    expect("a `by` label the series do not have is rejected",
           run(set_expr('sum by (status) (rate(calanque_registrations_total[5m]))')), "`sum by (status)`")
    expect("a label on a recording rule that it does not keep is rejected",
           run(set_expr('calanque:sli_error_ratio:rate5m{datacenter="a"}', panel=2, target=1)),
           "label 'datacenter' is not a label of calanque:sli_error_ratio:rate5m")
    expect("`le` outside a histogram's _bucket is rejected",
           run(set_expr('calanque_call_setup_seconds_count{le="1"}')), "label 'le'")
    expect("malformed JSON is rejected", run('{"panels": ['), "not well-formed JSON")
    expect("duplicate panel ids are rejected",
           run(broken(lambda d: d["panels"][2].__setitem__("id", 2))), "id 2 also used")
    expect("a panel without an expr is rejected",
           run(broken(lambda d: d["panels"][1]["targets"][0].pop("expr"))), "has no expr")
    expect("a panel without targets is rejected",
           run(broken(lambda d: d["panels"][1].__setitem__("targets", []))), "no target")
    expect("a panel on a fixed datasource is rejected",
           run(broken(lambda d: d["panels"][1].__setitem__("datasource", {"uid": "prom-1"}))), "not ${datasource}")
    expect("a dashboard without the datacenter variable is rejected",
           run(broken(lambda d: d["templating"]["list"].pop(1))), "no `datacenter` template variable")
    expect("another schemaVersion is rejected",
           run(broken(lambda d: d.__setitem__("schemaVersion", 38))), "schemaVersion 38")
    expect("unparsable PromQL is rejected", run(set_expr('sum(rate(calanque_ready[5m])')), "cannot parse")
    expect("an unknown metric in a rule is rejected",
           run(rules=rules_with(expr="calanque_not_ready == 1")), "unknown metric 'calanque_not_ready'")
    expect("an alert without severity is rejected", run(rules=rules_with(labels={})), "severity None")
    expect("a runbook_url to a missing heading is rejected",
           run(rules=rules_with(annotations={"runbook_url": "docs/runbooks/services.md#nope"})),
           "no heading with that anchor")
    expect("a $labels template on a label the expression drops is rejected",
           run(rules=rules_with(expr="sum(calanque_ready) == 0")), "$labels.pod")
    expect("an alert without a silent test is rejected",
           run(tests={"t.yaml": {"tests": [{"alert_rule_test": [
               {"alertname": "SelfTestAlert", "exp_alerts": [{}]}]}]}}), "no test where it stays silent")
    expect("an alert missing from the runbook index is rejected", run(index=""), "not listed in")
    if failures:
        print(f"check-dashboards self-test: {len(failures)} checks did not behave: FAILED")
        return 1
    print("check-dashboards self-test: every bad input rejected, the good one accepted: ok")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        help="the repository (default: this script's parent directory)")
    parser.add_argument("--self-test", action="store_true",
                        help="feed the checks bad dashboards and rules and fail unless each is rejected")
    parser.add_argument("--emit-promql-rules", metavar="FILE",
                        help="also write every dashboard expression as a rule file, for `promtool check rules`")
    args = parser.parse_args()
    if args.self_test:
        return self_test(args.root)
    return check_tree(args.root, args.emit_promql_rules)


if __name__ == "__main__":
    sys.exit(main())
