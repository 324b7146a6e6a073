"""The deploy lock's SSM storage, shared by the modules that read or write the lock
(``ec2fleet.fleet.deploy_lock``, ``ec2fleet.fleet.deploy_checkpoint``): the stored form (a main
value and continuation parts), the controller-local mutex, the parameter store calls
(:class:`LockStore`) and the writes over the lock a run holds that never lose a concurrent write of
the same run (:func:`holder_write`, :func:`store_data`, :func:`extend`).

The rules (sizes, parts, races) are documented once, in the deploy_lock module's DOCUMENTATION.
Every AWS call goes through ``aws.AwsCalls``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

try:
    import fcntl
except ImportError:  # pragma: no cover - a controller is POSIX; without flock the history check alone protects
    fcntl = None

from ansible_collections.ec2fleet.fleet.plugins.module_utils.aws import (
    FLEET_AWS_ERRORS,
    error_code,
    format_aws_error,
)
from ansible_collections.ec2fleet.fleet.plugins.module_utils.deploy import DeployError

TIER_LIMITS = {"Standard": 4096, "Advanced": 8192}
# Continuation parameters: each part is pinned in the main value as [number, version, digest].
DIGEST_CHARS = 12
# Bytes the plan keeps free in the main value: the heartbeat's heartbeat_at, part versions growing.
HEADROOM = 64
PLACEHOLDER_PART = [999, 99999, "0" * DIGEST_CHARS]
# A write that keeps meeting concurrent writes of the same run gives up after this many re-applies.
MAX_REAPPLY = 50
MISSING_CODES = ("ParameterNotFound", "ParameterVersionNotFound")

# The lock's identity, the same options in every module that reads or writes it (each module's
# DOCUMENTATION states them), and the rules between them.
LOCK_OPTIONS = {
    "name": {"type": "str"},
    "app": {"type": "str"},
    "env": {"type": "str"},
    "tier": {"type": "str", "choices": list(TIER_LIMITS), "default": "Standard"},
}
LOCK_OPTION_RULES = {"required_one_of": [("name", "app")], "required_together": [("app", "env")]}


def lock_name(params):
    """The lock's SSM parameter: ``name``, else ``/<app>/<env>/deploy-lock``."""
    return params["name"] or f"/{params['app']}/{params['env']}/deploy-lock"


# --- times and the holder -----------------------------------------------------------------------

def iso(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def describe_holder(name, holder):
    if not isinstance(holder, dict):
        return f"deploy lock {name} is held (unreadable value: {str(holder)[:200]!r})"
    beat = f", last heartbeat {holder['heartbeat_at']}" if holder.get("heartbeat_at") else ""
    return (f"deploy lock {name} is held by {holder.get('owner', '?')} (pid {holder.get('pid', '?')} on "
            f"{holder.get('controller', '?')}), deploying version {holder.get('version') or '?'}, "
            f"started {holder.get('started_at', '?')}, expires {holder.get('expires_at', '?')}{beat}, "
            f"run {holder.get('run_id', '?')}")


def beaten_lock(holder, ttl, now):
    """The lock a heartbeat writes: expiry now + ttl (never earlier than it was), heartbeat_at now."""
    lock = dict(holder)
    expires = now + timedelta(seconds=ttl)
    current = parse_time(holder.get("expires_at"))
    if current is not None and current.tzinfo is not None and current > expires:
        expires = current
    lock["expires_at"] = iso(expires)
    lock["heartbeat_at"] = iso(now)
    return lock


# --- the stored form: a main value and continuation parts ---------------------------------------

def encode_json(value):
    """The stored text of a value: compact, sorted, ASCII (so characters are bytes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def digest(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]


def cut(text, size):
    return [text[start:start + size] for start in range(0, len(text), size)] or [text]


def valid_refs(refs):
    """Is ``refs`` a parts map: {key: [[number, version, digest], ...]}?"""
    if not isinstance(refs, dict):
        return False
    for entries in refs.values():
        if not isinstance(entries, list) or not entries:
            return False
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(x, int) for x in entry[:2])
                    and isinstance(entry[2], str)):
                return False
    return True


def ref_order(refs):
    """The keys of a parts map in the order of their part numbers."""
    if not valid_refs(refs):
        return []
    return [key for key, _entries in sorted(refs.items(), key=lambda item: item[1][0][0])]


def part_numbers(refs):
    if not valid_refs(refs):
        return set()
    return {entry[0] for entries in refs.values() for entry in entries}


def split_lock(lock, limit, order=()):
    """How ``lock`` is stored within ``limit`` bytes: ``(main, moved)``.

    When the whole lock fits (with HEADROOM to spare), ``main`` is the lock and ``moved`` is empty.
    Otherwise the largest values of ``data`` are moved out, one at a time, until the main value with
    their references fits: ``moved`` lists ``(key, chunks)``, each value's stored JSON text cut into
    chunks of at most ``limit`` bytes, in part order (keys of ``order`` first, so values already in
    parts keep their part numbers, then the others by name). None when nothing can make it fit.
    """
    budget = limit - HEADROOM
    if len(encode_json(lock)) <= budget:
        return lock, []
    data = dict(lock.get("data") or {})
    texts = {key: encode_json(value) for key, value in data.items()}
    moved = []
    for key in sorted(texts, key=lambda k: (-len(texts[k]), k)):
        moved.append(key)
        main = dict(lock, data={k: v for k, v in data.items() if k not in moved})
        main["parts"] = {k: [PLACEHOLDER_PART] * len(cut(texts[k], limit)) for k in moved}
        if len(encode_json(main)) <= budget:
            break
    else:
        return None
    ordered = [k for k in order if k in moved] + sorted(k for k in moved if k not in order)
    main = dict(lock, data={k: v for k, v in data.items() if k not in moved})
    return main, [(key, cut(texts[key], limit)) for key in ordered]


def strip_refs(lock):
    """A lock as the caller sees it: without the parts map."""
    if isinstance(lock, dict) and "parts" in lock:
        return {k: v for k, v in lock.items() if k != "parts"}
    return lock


# --- local serialisation -----------------------------------------------------------------------

@contextmanager
def local_mutex(key, timeout=120.0):
    """Serialise this controller's read-modify-write cycles on one lock (the deploy's updates, its
    heartbeat, its release) with flock(2) on a file in the temp directory. Best effort: without it
    (no flock, a file another user owns, the timeout) the parameter-history check still makes every
    write safe; the mutex only closes the few-millisecond windows that check repairs after the fact.
    Yields whether the mutex is held."""
    path = os.path.join(tempfile.gettempdir(),
                        "ec2fleet-deploy-lock-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16] + ".flock")
    try:
        handle = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:
        yield False
        return
    try:
        held, deadline = False, time.monotonic() + timeout
        while fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
            except OSError:
                break
        yield held
    finally:
        os.close(handle)  # releases the flock


# --- SSM -------------------------------------------------------------------------------------

class LockStore:
    """The lock's parameters: the main one (``name``) and its continuation parts (``name/part-<n>``).

    Every call is a single SSM API call through the module's client (botocore retries throttling
    with backoff); ``calls`` counts them by operation.
    """

    def __init__(self, aws, name, tier):
        self.aws, self.name, self.tier = aws, name, tier
        self.limit = TIER_LIMITS[tier]
        self.last_raw = None  # the value exactly as the last read() found it
        self.calls = {}
        self.part_writes = 0

    def _count(self, operation):
        self.calls[operation] = self.calls.get(operation, 0) + 1

    def _fail(self, exc, action, name=None):
        raise DeployError(format_aws_error(exc, action=f"{action} deploy lock {name or self.name}",
                                           where=self.aws.where)) from exc

    def part_name(self, number):
        return f"{self.name}/part-{number}"

    def mutex(self):
        return local_mutex(f"{self.aws.where}|{self.name}")

    # main value

    def read(self):
        """``(value, version)``; ``(None, None)`` when there is no lock. The value as stored: with
        its ``parts`` map when some data is in continuation parameters (see resolve())."""
        self._count("get_parameter")
        try:
            parameter = self.aws.client("ssm").get_parameter(Name=self.name)["Parameter"]
        except FLEET_AWS_ERRORS as exc:
            if error_code(exc) == "ParameterNotFound":
                self.last_raw = None
                return None, None
            self._fail(exc, "read")
        self.last_raw = parameter["Value"]
        try:
            value = json.loads(parameter["Value"])
        except ValueError:
            value = parameter["Value"]
        return value, parameter["Version"]

    def get_text(self, name):
        """The value of a parameter (``name`` may carry a ``:version`` selector), or None."""
        self._count("get_parameter")
        try:
            return self.aws.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
        except FLEET_AWS_ERRORS as exc:
            if error_code(exc) in MISSING_CODES:
                return None
            self._fail(exc, "read", name)

    def value_at(self, version):
        """The main value stored at one version (GetParameter with a version selector), or None."""
        return self.get_text(f"{self.name}:{version}")

    def encode(self, lock):
        text = encode_json(lock)
        if len(text.encode("utf-8")) > self.limit:
            self._too_large(text)
        return text

    def _too_large(self, text, parts=""):
        raise DeployError(f"deploy lock {self.name}: value is {len(text)} bytes, over the {self.limit}-byte limit "
                          f"of the {self.tier} tier{parts} (keep less in data, or use tier: Advanced)")

    def plan(self, lock, order=()):
        """split_lock() for this tier; DeployError when no split makes the value fit."""
        plan = split_lock(lock, self.limit, order)
        if plan is None:
            self._too_large(encode_json(lock), " even with its largest values in continuation parameters")
        return plan

    def put(self, name, text, overwrite=True, description=None):
        """PutParameter; returns the new version, None when creating and it exists."""
        self._count("put_parameter")
        extra = {"Description": description} if description else {}
        try:
            return self.aws.client("ssm").put_parameter(
                Name=name, Value=text, Type="String", Overwrite=overwrite, Tier=self.tier, **extra,
            )["Version"]
        except FLEET_AWS_ERRORS as exc:
            if not overwrite and error_code(exc) == "ParameterAlreadyExists":
                return None
            self._fail(exc, "write" if overwrite else "create", name)

    def create(self, lock):
        """Atomic create; None when the parameter already exists."""
        return self.put(self.name, self.encode(lock), overwrite=False, description="ec2-fleet deploy lock")

    def overwrite(self, lock):
        return self.put(self.name, self.encode(lock))

    def write_text(self, text):
        return self.put(self.name, text)

    def restore(self, raw_value):
        """Put back a value exactly as it was stored (after losing a race)."""
        self.put(self.name, raw_value)

    def version_value(self, version, name=None):
        """The value stored at one version, from the parameter history (GetParameterHistory), or None."""
        return next((item["Value"] for item in self.history(name) if item["Version"] == version), None)

    def history(self, name=None):
        name = name or self.name
        items = []
        try:
            pages = self.aws.client("ssm").get_paginator("get_parameter_history").paginate(
                Name=name, PaginationConfig={"PageSize": 50})
            for page in pages:
                self._count("get_parameter_history")
                items.extend(page["Parameters"])
        except FLEET_AWS_ERRORS as exc:
            if error_code(exc) in MISSING_CODES:
                return []
            self._fail(exc, "read the history of", name)
        return items

    def delete(self, name=None):
        """DeleteParameter; False when it was not there."""
        self._count("delete_parameter")
        try:
            self.aws.client("ssm").delete_parameter(Name=name or self.name)
        except FLEET_AWS_ERRORS as exc:
            if error_code(exc) != "ParameterNotFound":
                self._fail(exc, "delete", name)
            return False
        return True

    def follows(self, written, version, raw, ours):
        """Did our write (version ``written``, text ``ours``) directly follow the value we built it on
        (``version``, ``raw``)? Reads the versions before ours (version selectors on the history):

        * ``("clean", None)``: it did; copies of ``ours`` in between are retries of our own write
          (a PutParameter whose answer was lost and that botocore sent again);
        * ``("between", text)``: another write came in between; ``text`` is the latest of them,
          the value our write replaced;
        * ``("deleted", None)``: the lock was deleted since we read it and our write created it afresh.
        """
        at = written - 1
        while at >= 1:
            text = self.value_at(at)
            if at == version and text == raw:
                return "clean", None
            if text is None:
                raise DeployError(f"deploy lock {self.name}: version {at} is missing from its history; "
                                  f"cannot tell whether a concurrent write was lost")
            if text != ours:
                return "between", text
            at -= 1
        return "deleted", None

    def remove_if_current(self, written):
        """Delete our write when it is still the current value (the lock had been released)."""
        _value, current = self.read()
        if current == written:
            self.delete()

    def restore_if_current(self, written, raw_value):
        _value, current = self.read()
        if current == written:
            self.restore(raw_value)

    # continuation parts

    def read_part(self, number, version, sha):
        """One part's text, checked against its digest: the pinned version, else the latest, else any
        version of its history with that digest; None when none has it."""
        name = self.part_name(number)
        for candidate in (f"{name}:{version}", name):
            text = self.get_text(candidate)
            if text is not None and digest(text) == sha:
                return text
        return next((item["Value"] for item in reversed(self.history(name)) if digest(item["Value"]) == sha), None)

    def resolve(self, holder, skip=()):
        """``(lock, unreadable)``: the lock with the values kept in parts read back into ``data``
        (except the keys in ``skip``, left out) and without its parts map; ``unreadable`` names the
        keys whose parts are missing or damaged."""
        if not isinstance(holder, dict) or "parts" not in holder:
            return holder, []
        refs = holder["parts"]
        lock = strip_refs(holder)
        data = dict(lock.get("data") or {})
        if not valid_refs(refs):
            return dict(lock, data=data), ["parts"]
        unreadable = []
        for key in ref_order(refs):
            if key in skip:
                continue
            texts = [self.read_part(*entry) for entry in refs[key]]
            try:
                if None in texts:
                    raise ValueError(key)
                data[key] = json.loads("".join(texts))
            except ValueError:
                unreadable.append(key)
        return dict(lock, data=data), unreadable

    def write_parts(self, moved, previous, pinned):
        """Write the parts of ``moved`` (split_lock()) and return the parts map pinning them.

        A part whose digest is that of the part with the same number in ``previous`` (the parts map
        the write replaces), or of one this call already wrote (``pinned``: {(number, digest):
        version}), is not written again: only parts whose content changed cost a PutParameter.
        """
        old = {}
        if valid_refs(previous):
            old = {(entry[0], entry[2]): entry[1] for entries in previous.values() for entry in entries}
        refs, number = {}, 0
        for key, chunks in moved:
            entries = []
            for text in chunks:
                number += 1
                sha = digest(text)
                version = old.get((number, sha)) or pinned.get((number, sha))
                if version is None:
                    version = self.put(self.part_name(number), text,
                                       description=f"ec2-fleet deploy lock part of {self.name}")
                    self.part_writes += 1
                    pinned[(number, sha)] = version
                entries.append([number, version, sha])
            refs[key] = entries
        return refs

    def delete_parts(self, numbers):
        """Delete parts, highest number first (a crash midway leaves a contiguous run from 1)."""
        for number in sorted(numbers, reverse=True):
            self.delete(self.part_name(number))

    def delete_all_parts(self, known):
        """Delete every part: the numbers in ``known`` and any beyond them left by an interrupted run
        (parts are numbered from 1 without gaps: probe upwards until one is missing)."""
        top = max(known, default=0)
        while self.get_text(self.part_name(top + 1)) is not None:
            top += 1
        self.delete_parts(set(known) | set(range(1, top + 1)))


# --- writing over the lock this run holds -------------------------------------------------------

def holder_write(store, run_id, source, version, raw, build, deadline=None):
    """Write ``build(source)`` over the lock run ``run_id`` holds (``source``, read at ``version`` as
    ``raw``), so that no concurrent write of the same run (the deploy's updates, its heartbeat) is
    lost, and a lock another run took over meanwhile is put back.

    ``build(source)`` returns ``(value, text)`` to write. After the write, the parameter history
    says whether it directly followed ``raw``. When another write of this run came in between,
    ``build`` is applied again on top of that newer value and written over ours, and so on until a
    write is clean (at most MAX_REAPPLY times, and not past ``deadline``, a time.monotonic()).

    Returns ``(outcome, value, version, reapplied)``: outcome ``written`` (value and version are
    ours), ``released`` (the lock was deleted meanwhile: our write, which re-created it, is deleted
    again) or ``taken_over`` (value is the other run's lock, put back).
    """
    for reapplied in range(MAX_REAPPLY):
        value, text = build(source)
        written = store.write_text(text)
        outcome, newer = store.follows(written, version, raw, text)
        if outcome == "clean":
            return "written", value, written, reapplied
        if outcome == "deleted":
            store.remove_if_current(written)
            return "released", None, None, reapplied
        try:
            base = json.loads(newer)
        except ValueError:
            base = newer
        if not isinstance(base, dict) or base.get("run_id") != run_id:
            store.restore_if_current(written, newer)
            return "taken_over", base, None, reapplied
        source, version, raw = base, written, text
        if deadline is not None and time.monotonic() >= deadline:
            break
    raise DeployError(f"deploy lock {store.name}: concurrent writes kept replacing this write "
                      f"({MAX_REAPPLY} attempts); it may be lost, run again")


def parts_builder(store, lock_of, pinned, seen):
    """``build`` for holder_write() when the data may need parts: ``lock_of(source)`` is the full
    lock to store (data read back from parts); its large values are written to parts (only the
    changed ones) and the main value pins them. ``seen`` collects every part number referenced
    by a value this write replaces (so parts no longer used can be deleted after)."""
    def build(source):
        previous = source.get("parts") if isinstance(source, dict) else None
        seen.update(part_numbers(previous))
        full = lock_of(source)
        main, moved = store.plan(full, ref_order(previous))
        refs = store.write_parts(moved, previous, pinned)
        stored = dict(main, parts=refs) if refs else main
        build.full, build.refs = full, refs
        return stored, store.encode(stored)
    build.full, build.refs = None, {}
    return build


def store_data(store, run_id, source, version, raw, lock_of):
    """Write the full lock ``lock_of(source)`` (parts first, then the main value, then the parts no
    longer referenced deleted). Returns (outcome, full lock or other holder, version, reapplied, refs)."""
    pinned, seen = {}, set()
    build = parts_builder(store, lock_of, pinned, seen)
    outcome, value, written, reapplied = holder_write(store, run_id, source, version, raw, build)
    if outcome != "written":
        return outcome, value, written, reapplied, {}
    # Parts the replaced values referenced, or that an earlier attempt of this write wrote, and the
    # value now stored does not use.
    unused = (seen | {number for number, _sha in pinned}) - part_numbers(build.refs)
    if unused:
        store.delete_parts(unused)
    return outcome, build.full, written, reapplied, build.refs


def part_names(store, refs):
    return [store.part_name(n) for n in sorted(part_numbers(refs))]


def extend(store, run_id, ttl, deadline=None, clock=None):
    """One heartbeat: push the expiry of the lock ``run_id`` holds to now + ``ttl``, without losing a
    concurrent write of the same run (see holder_write()). Returns ``(outcome, value, reapplied)``:
    outcome ``extended``, ``released`` or ``taken_over`` (value: the other run's lock)."""
    clock = clock or (lambda: datetime.now(timezone.utc))
    with store.mutex():
        stored, version = store.read()
        if stored is None:
            return "released", None, 0
        if not isinstance(stored, dict) or stored.get("run_id") != run_id:
            return "taken_over", stored, 0

        def build(source):
            lock = beaten_lock(source, ttl, clock())  # the parts map, if any, is kept as it is
            return lock, store.encode(lock)

        outcome, value, _written, reapplied = holder_write(store, run_id, stored, version, store.last_raw, build,
                                                           deadline)
    return ("extended" if outcome == "written" else outcome), value, reapplied
