"""STAND-IN for CloudWatch's alarm evaluation: moto stores alarms and never evaluates them.

fleetd calls `Evaluator.evaluate()` every few seconds. It reads every alarm of the emulator and
sets each one's state with SetAlarmState, with a reason in CloudWatch's manner, when the state it
evaluates differs from the alarm's. Production code never runs this: on AWS, CloudWatch does it, and
the deploy only reads states (the `alarm_state` module). What it evaluates:

Metric alarms, on one metric (`Statistic`, or `ExtendedStatistic` such as p99: the emulator answers
percentiles, see ec2fleet/moto_server.py) or on metric math (`Metrics`: MetricStat queries and
expressions of them with + - * /, unary minus, parentheses, numbers, FILL(x, number) and ABS(x);
the query with ReturnData is the alarm's value). Over `Period` (10 and 30 s high-resolution
periods included), the most recent complete periods are read (a period counts as complete
`settle` seconds after its end, the time the balancer's stand-in needs to publish it):

- with at least `EvaluationPeriods` (N) datapoints among the last 2N periods, the N most recent
  decide: ALARM when at least `DatapointsToAlarm` (M, default N) breach the threshold
  (`ComparisonOperator`, `Threshold`), else OK; missing data is not needed then;
- with fewer, the missing ones count by `TreatMissingData`: `breaching` and `notBreaching` as
  their names say; `missing` (the default) and `ignore` use the real datapoints when they decide
  (M breaching, or too few left to reach M: OK) and keep the state otherwise; with no datapoint
  at all, `missing` goes to INSUFFICIENT_DATA and `ignore` keeps the state;
- a percentile alarm with `EvaluateLowSampleCountPercentile: ignore` keeps its state while a
  datapoint it evaluates has fewer samples than CloudWatch's rule asks (10/(1-p) for p >= 0.5,
  else 10/p).

Composite alarms: `AlarmRule` with ALARM(), OK(), INSUFFICIENT_DATA() (a name or ARN, quoted or
not), TRUE, FALSE, NOT, AND, OR and parentheses, on the states just evaluated (composites of
composites too): ALARM when the rule is true, else OK; INSUFFICIENT_DATA when it names an alarm
that does not exist.

Not stood in for: alarm actions (SNS, Auto Scaling policies), anomaly detection bands, Metrics
Insights queries and other metric math functions (such alarms are left alone, logged once).
"""

from __future__ import annotations

import json
import logging
import math
import operator
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("fleetd.alarms")

ALARM, OK, INSUFFICIENT_DATA = "ALARM", "OK", "INSUFFICIENT_DATA"
COMPARISONS = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}


class Unsupported(Exception):
    """Something of an alarm this stand-in does not evaluate (the alarm is left alone)."""


# --- metric math ---------------------------------------------------------------------------------

TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|([A-Za-z_][A-Za-z0-9_]*)|(.))")


def _tokens(text):
    found, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        number, name, other = match.groups()
        found.append(("num", float(number)) if number else ("name", name) if name else ("op", other))
        pos = match.end()
    return found


class Expression:
    """A metric math expression over series ({period start: value}) and numbers."""

    FUNCTIONS = ("FILL", "ABS")

    def __init__(self, text):
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.tree = self._sum()
        if self.pos != len(self.tokens):
            raise Unsupported(f"cannot read metric math {text!r} at {self.tokens[self.pos][1]!r}")

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def _take(self, kind=None, value=None):
        token = self._peek()
        if token[0] is None or (kind and token[0] != kind) or (value and token[1] != value):
            raise Unsupported(f"cannot read metric math {self.text!r}: expected {value or kind}")
        self.pos += 1
        return token

    def _sum(self):
        tree = self._product()
        while self._peek() in (("op", "+"), ("op", "-")):
            tree = (self._take()[1], tree, self._product())
        return tree

    def _product(self):
        tree = self._unary()
        while self._peek() in (("op", "*"), ("op", "/")):
            tree = (self._take()[1], tree, self._unary())
        return tree

    def _unary(self):
        if self._peek() in (("op", "-"), ("op", "+")):
            sign = self._take()[1]
            operand = self._unary()
            return ("*", ("num", -1.0), operand) if sign == "-" else operand
        return self._primary()

    def _primary(self):
        kind, value = self._take()
        if kind == "num":
            return ("num", value)
        if kind == "op" and value == "(":
            tree = self._sum()
            self._take("op", ")")
            return tree
        if kind == "name" and self._peek() == ("op", "("):
            if value not in self.FUNCTIONS:
                raise Unsupported(f"metric math function {value}() is not stood in for")
            self._take()
            args = [self._sum()]
            while self._peek() == ("op", ","):
                self._take()
                args.append(self._sum())
            self._take("op", ")")
            return ("call", value, args)
        if kind == "name":
            return ("id", value)
        raise Unsupported(f"cannot read metric math {self.text!r} at {value!r}")

    def evaluate(self, lookup, grid):
        """The value: a number or a series; ``lookup(id)`` gives another query's value."""
        return self._eval(self.tree, lookup, grid)

    def _eval(self, tree, lookup, grid):
        kind = tree[0]
        if kind == "num":
            return tree[1]
        if kind == "id":
            return lookup(tree[1])
        if kind == "call":
            args = [self._eval(arg, lookup, grid) for arg in tree[2]]
            if tree[1] == "ABS" and len(args) == 1:
                return _apply(abs, args[0])
            if tree[1] == "FILL" and len(args) == 2 and isinstance(args[1], float):
                series = args[0] if isinstance(args[0], dict) else {}
                return {t: series.get(t, args[1]) for t in grid}
            raise Unsupported(f"{tree[1]}() with these arguments is not stood in for")
        return _binary(kind, self._eval(tree[1], lookup, grid), self._eval(tree[2], lookup, grid))


def _apply(function, value):
    return {t: function(v) for t, v in value.items()} if isinstance(value, dict) else function(value)


def _binary(op, left, right):
    """Point by point; a point missing on either side, or divided by zero, is missing."""
    def one(a, b):
        if op == "/":
            return None if b == 0 else a / b
        return {"+": operator.add, "-": operator.sub, "*": operator.mul}[op](a, b)

    if not isinstance(left, dict) and not isinstance(right, dict):
        return one(left, right)
    stamps = (left.keys() & right.keys()) if isinstance(left, dict) and isinstance(right, dict) else \
        (left.keys() if isinstance(left, dict) else right.keys())
    found = {}
    for t in stamps:
        value = one(left[t] if isinstance(left, dict) else left, right[t] if isinstance(right, dict) else right)
        if value is not None:
            found[t] = value
    return found


# --- composite rules ------------------------------------------------------------------------------

RULE_FUNCTIONS = {"ALARM": ALARM, "OK": OK, "INSUFFICIENT_DATA": INSUFFICIENT_DATA}


class Rule:
    """A composite alarm's AlarmRule."""

    def __init__(self, text):
        self.text = text
        self.pos = 0
        self.tree = self._or()
        self._space()
        if self.pos != len(text):
            raise Unsupported(f"cannot read alarm rule {text!r} at position {self.pos}")

    def _space(self):
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _word(self):
        self._space()
        match = re.compile(r"[A-Za-z_]+").match(self.text, self.pos)
        return match.group(0).upper() if match else None

    def _keyword(self, word):
        if self._word() == word:
            self.pos += len(word)
            return True
        return False

    def _or(self):
        tree = self._and()
        while self._keyword("OR"):
            tree = ("or", tree, self._and())
        return tree

    def _and(self):
        tree = self._not()
        while self._keyword("AND"):
            tree = ("and", tree, self._not())
        return tree

    def _not(self):
        if self._keyword("NOT"):
            return ("not", self._not())
        return self._atom()

    def _expect(self, char):
        self._space()
        if not self.text.startswith(char, self.pos):
            raise Unsupported(f"alarm rule {self.text!r}: {char!r} expected at position {self.pos}")
        self.pos += 1

    def _atom(self):
        self._space()
        if self.text.startswith("(", self.pos):
            self.pos += 1
            tree = self._or()
            self._expect(")")
            return tree
        word = self._word()
        if word in ("TRUE", "FALSE"):
            self.pos += len(word)
            return ("const", word == "TRUE")
        if word in RULE_FUNCTIONS:
            self.pos += len(word)
            self._expect("(")
            self._space()
            if self.text.startswith('"', self.pos):
                close = self.text.find('"', self.pos + 1)
                if close < 0:
                    raise Unsupported(f"alarm rule {self.text!r}: unterminated quote at position {self.pos}")
                name = self.text[self.pos + 1:close]
                self.pos = close + 1
                self._expect(")")
            else:
                end = self.text.find(")", self.pos)
                name = self.text[self.pos:end].strip() if end >= 0 else ""
                self.pos = end + 1
            if not name:
                raise Unsupported(f"alarm rule {self.text!r}: an alarm name in {word}() expected")
            return ("state", RULE_FUNCTIONS[word], name.rsplit(":alarm:", 1)[-1])
        raise Unsupported(f"cannot read alarm rule {self.text!r} at position {self.pos}")

    def names(self, tree=None):
        tree = self.tree if tree is None else tree
        if tree[0] == "state":
            return {tree[2]}
        if tree[0] == "const":
            return set()
        return set().union(*(self.names(t) for t in tree[1:]))

    def evaluate(self, state_of, tree=None):
        tree = self.tree if tree is None else tree
        kind = tree[0]
        if kind == "const":
            return tree[1]
        if kind == "state":
            return state_of(tree[2]) == tree[1]
        if kind == "not":
            return not self.evaluate(state_of, tree[1])
        if kind == "and":
            return self.evaluate(state_of, tree[1]) and self.evaluate(state_of, tree[2])
        return self.evaluate(state_of, tree[1]) or self.evaluate(state_of, tree[2])


# --- evaluation -------------------------------------------------------------------------------------

@dataclass
class Verdict:
    state: str | None  # None: keep the current state
    reason: str = ""
    data: dict | None = None


def minimum_samples(percentile):
    """CloudWatch's least sample count for a percentile to be significant."""
    p = percentile / 100
    return math.ceil(round(10 / (1 - p) if p >= 0.5 else 10 / p, 6))  # round: 10/(1-0.9) is 100.00000000000001


def _when(stamp):
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%d/%m/%y %H:%M:%S")


def _plural(count, word):
    return f"{count} {word}" + ("" if count == 1 else "s")


def judge(alarm, points, grid, samples=None):
    """The state CloudWatch's rules give this metric alarm for these datapoints.

    ``points``: {period start: value} over ``grid`` (the evaluation range's period starts, oldest
    first); ``samples``: {period start: sample count}, given for percentile alarms that ignore
    low sample counts."""
    compare, words = COMPARISONS[alarm["ComparisonOperator"]]
    threshold = float(alarm["Threshold"])
    n = int(alarm["EvaluationPeriods"])
    m = int(alarm.get("DatapointsToAlarm") or n)
    treat = alarm.get("TreatMissingData") or "missing"
    real = [(t, points[t]) for t in grid if t in points]
    window = real[-n:]
    missing = n - len(window)
    breaching = [(t, v) for t, v in window if compare(v, threshold)]
    data = {"version": "1.0", "queryDate": datetime.now(UTC).isoformat(),
            "startDate": datetime.fromtimestamp(grid[0], tz=UTC).isoformat(),
            "period": int(grid[1] - grid[0]) if len(grid) > 1 else None, "threshold": threshold,
            "recentDatapoints": [v for _, v in window],
            "evaluatedDatapoints": [{"timestamp": datetime.fromtimestamp(t, tz=UTC).isoformat(), "value": v}
                                    for t, v in window]}
    if samples is not None:
        stat = alarm.get("ExtendedStatistic", "p100")
        least = minimum_samples(float(stat[1:]))
        if any(samples.get(t, 0) < least for t, _ in window):
            return Verdict(None)
    if missing and treat == "breaching":
        count = len(breaching) + missing
    elif missing and treat == "notBreaching":
        count = len(breaching)
    elif missing:
        if not window:
            if treat == "ignore":
                return Verdict(None)
            return Verdict(INSUFFICIENT_DATA, f"Insufficient Data: {_plural(n, 'datapoint')} "
                                              f"{'was' if n == 1 else 'were'} unknown.", data)
        if not (len(breaching) >= m or len(breaching) + missing < m):
            return Verdict(None)  # the real datapoints do not decide
        count = len(breaching)
    else:
        count = len(breaching)
    state = ALARM if count >= m else OK
    shown = breaching if state == ALARM else [(t, v) for t, v in window if not compare(v, threshold)]
    listed = ", ".join(f"{v:g} ({_when(t)})" for t, v in shown)
    verb = "was" if len(shown) == 1 else "were"
    filled, kind = "", "Breaching" if treat == "breaching" else "NonBreaching"
    if missing and treat in ("breaching", "notBreaching"):
        if not window:
            return Verdict(state, f"Threshold Crossed: no datapoints were received for {_plural(n, 'period')} and "
                                  f"{_plural(missing, 'missing datapoint')} {'was' if missing == 1 else 'were'} "
                                  f"treated as [{kind}].", data)
        filled = f" and {_plural(missing, 'missing datapoint')} treated as [{kind}]"
    reason = (f"Threshold Crossed: {len(shown)} out of the last {n} datapoints [{listed}]{filled} {verb} "
              f"{'' if state == ALARM else 'not '}{words} the threshold ({threshold:g}) "
              f"(minimum {_plural(m, 'datapoint')} for {'OK -> ALARM' if state == ALARM else 'ALARM -> OK'} transition).")
    return Verdict(state, reason, data)


class Evaluator:
    """Evaluates the emulator's alarms and sets their states, as CloudWatch would."""

    def __init__(self, cloudwatch, clock=time.time, settle=2.0):
        self.cloudwatch = cloudwatch
        self.clock = clock
        self.settle = settle
        self.unsupported: set[tuple[str, str]] = set()

    def alarms(self):
        metric, composite = [], []
        for page in self.cloudwatch.get_paginator("describe_alarms").paginate(
                AlarmTypes=["MetricAlarm", "CompositeAlarm"]):
            metric += page.get("MetricAlarms", [])
            composite += page.get("CompositeAlarms", [])
        return metric, composite

    def _skip(self, name, why):
        if (name, why) not in self.unsupported:
            self.unsupported.add((name, why))
            log.warning("alarm %s is not evaluated by the stand-in: %s", name, why)

    def evaluate(self) -> list[str]:
        """One pass over every alarm; the changes made, one line each."""
        metric, composite = self.alarms()
        now = self.clock()
        states = {}
        changes = []
        for alarm in metric:
            name = alarm["AlarmName"]
            states[name] = (alarm["StateValue"], alarm.get("StateUpdatedTimestamp"), alarm.get("AlarmArn", name))
            try:
                verdict = self.verdict(alarm, now)
            except Unsupported as exc:
                self._skip(name, str(exc))
                continue
            except Exception as exc:  # one alarm's failed read must not stop the others' evaluation
                log.warning("alarm %s: not evaluated this time: %s", name, exc)
                continue
            if verdict.state and verdict.state != alarm["StateValue"]:
                changes.append(self._set(name, alarm["StateValue"], verdict))
                states[name] = (verdict.state, datetime.now(UTC), states[name][2])  # when the emulator changed it
        rules = {}
        for alarm in composite:
            states[alarm["AlarmName"]] = (alarm["StateValue"], alarm.get("StateUpdatedTimestamp"),
                                          alarm.get("AlarmArn", alarm["AlarmName"]))
            try:
                rules[alarm["AlarmName"]] = Rule(alarm["AlarmRule"])
            except Unsupported as exc:
                self._skip(alarm["AlarmName"], str(exc))
        done: set[str] = set()
        for name in sorted(rules):
            changes += self._composite(name, rules, states, done, ())
        return changes

    def _composite(self, name, rules, states, done, path):
        if name in done:
            return []
        if name in path:
            self._skip(name, "its rule refers back to itself")
            return []
        rule = rules[name]
        changes = []
        for child in sorted(rule.names()):
            if child in rules:
                changes += self._composite(child, rules, states, done, (*path, name))
        done.add(name)
        absent = sorted(n for n in rule.names() if n not in states)
        if absent:
            verdict = Verdict(INSUFFICIENT_DATA, f"Alarm(s) in the rule do not exist: {', '.join(absent)}",
                              {"missingAlarms": absent})
        else:
            matched = rule.evaluate(lambda n: states[n][0])
            children = sorted(rule.names(), key=lambda n: _stamp(states[n][1]))
            latest = children[-1] if children else None
            reason = (f"{states[latest][2]} transitioned to {states[latest][0]} at "
                      f"{_long_date(states[latest][1])}" if latest else f"Rule {rule.text} is constant")
            verdict = Verdict(ALARM if matched else OK, reason, {"triggeringAlarms": [
                {"arn": states[n][2], "state": {"value": states[n][0], "timestamp": _iso(states[n][1])}}
                for n in children]})
        current = states[name][0]
        if verdict.state != current:
            changes.append(self._set(name, current, verdict))
            states[name] = (verdict.state, datetime.now(UTC), states[name][2])  # when the emulator changed it
        return changes

    def _set(self, name, before, verdict):
        self.cloudwatch.set_alarm_state(AlarmName=name, StateValue=verdict.state, StateReason=verdict.reason[:1023],
                                        StateReasonData=json.dumps(verdict.data or {}))
        line = f"alarm {name}: {before} -> {verdict.state} ({verdict.reason})"
        log.info("%s", line)
        return line

    def verdict(self, alarm, now) -> Verdict:
        if alarm.get("ThresholdMetricId"):
            raise Unsupported("anomaly detection bands")
        if alarm.get("ComparisonOperator") not in COMPARISONS:
            raise Unsupported(f"comparison {alarm.get('ComparisonOperator')}")
        queries, returned, expressions = self.queries(alarm)
        period = max(q["MetricStat"]["Period"] for q in queries)
        n = int(alarm["EvaluationPeriods"])
        end = math.floor((now - self.settle) / period) * period
        grid = [end - period * k for k in range(2 * n, 0, -1)]
        series = self.fetch(queries, grid[0], end)
        samples = series.pop("__samples", None)
        values = {}

        def lookup(qid):
            if qid in series:
                return series[qid]
            if qid in expressions:
                if qid not in values:
                    values[qid] = None  # a cycle reads as missing
                    values[qid] = expressions[qid].evaluate(lookup, grid)
                return values[qid] if values[qid] is not None else {}
            raise Unsupported(f"metric math refers to unknown id {qid}")

        points = lookup(returned)
        if not isinstance(points, dict):
            points = dict.fromkeys(grid, float(points))
        return judge(alarm, {t: v for t, v in points.items() if t in grid}, grid, samples)

    def queries(self, alarm):
        """GetMetricData queries for the alarm, the id of its value, and its expressions."""
        if not alarm.get("Metrics"):
            stat = alarm.get("ExtendedStatistic") or alarm.get("Statistic")
            if not stat:
                raise Unsupported("neither Statistic nor ExtendedStatistic")
            metric = {"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"],
                      "Dimensions": alarm.get("Dimensions") or []}
            query = {"Id": "value", "MetricStat": {"Metric": metric, "Period": int(alarm["Period"]), "Stat": stat}}
            if alarm.get("Unit"):
                query["MetricStat"]["Unit"] = alarm["Unit"]
            queries = [query]
            if alarm.get("ExtendedStatistic") and alarm.get("EvaluateLowSampleCountPercentile") == "ignore":
                queries.append({"Id": "__samples", "MetricStat": {**query["MetricStat"], "Stat": "SampleCount"}})
            return queries, "value", {}
        queries, expressions, returned = [], {}, None
        for entry in alarm["Metrics"]:
            if entry.get("ReturnData", True) is not False:
                returned = entry["Id"]
            if "MetricStat" in entry:
                queries.append({"Id": entry["Id"], "MetricStat": entry["MetricStat"]})
            elif "Expression" in entry:
                expressions[entry["Id"]] = Expression(entry["Expression"])
            else:
                raise Unsupported(f"metric query {entry['Id']} has neither MetricStat nor Expression")
        if not queries or returned is None:
            raise Unsupported("metric math without a MetricStat or a query returning data")
        return queries, returned, expressions

    def fetch(self, queries, start, end):
        answer = self.cloudwatch.get_metric_data(
            MetricDataQueries=[{**q, "ReturnData": True} for q in queries],
            StartTime=datetime.fromtimestamp(start, tz=UTC), EndTime=datetime.fromtimestamp(end, tz=UTC),
            ScanBy="TimestampAscending")
        series = {}
        for result in answer["MetricDataResults"]:
            series[result["Id"]] = {_stamp(t): float(v) for t, v in zip(result["Timestamps"], result["Values"],
                                                                       strict=True)
                                    if v is not None and start <= _stamp(t) < end}
        return series


def _stamp(value):
    if value is None:
        return 0.0
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


def _iso(value):
    return datetime.fromtimestamp(_stamp(value), tz=UTC).isoformat()


def _long_date(value):
    return datetime.fromtimestamp(_stamp(value), tz=UTC).strftime("%A %d %B, %Y %H:%M:%S UTC")

