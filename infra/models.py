"""Smaller EC2, SSM and Service Quotas models for labctl's clients, cut at run time from botocore's own.

Every new process parses botocore's whole EC2 model (about 830 operations, 4 MB of JSON) before its
first call: 0.1-0.15 s here, paid by each `fab` process. labctl calls about twenty of them. The first
run writes a copy holding only `OPERATIONS` (and the shapes they use) to a cache directory keyed by the
botocore version, its model file and that list; labctl's data loader searches that directory first
(botocore's `extra_search_paths`, the mechanism behind ~/.aws/models). Paginators, waiters, endpoint rules
and endpoints still come from botocore itself, whose files are never changed or copied into the project.

An operation that is not listed still works: `untrimmed_operation` (registered by `infra.session` on
botocore's `getattr` event) answers it from a client on the whole model, only slower.
tests/speed checks that every EC2 and SSM operation named in labctl's code is listed.

The cache heals itself: a cut file that does not end like the JSON written here (cut short by a full disk or
a copy) is cut again; one damaged in another way makes `infra.session` fall back to the whole model for
that run and `discard_damaged` remove it, so the next run cuts it again. Each use touches its directory;
directories of other botocore versions or lists unused for PRUNE_AFTER_DAYS are removed when a new one is
made (another venv may still use a recent one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

OPERATIONS = {
    "ec2": frozenset(
        {
            "AuthorizeSecurityGroupIngress",
            "CreateKeyPair",
            "CreateSecurityGroup",
            "CreateTags",
            "DeleteKeyPair",
            "DeleteSecurityGroup",
            "DeleteTags",
            "DescribeImages",
            "DescribeInstanceAttribute",
            "DescribeInstanceTypeOfferings",
            "DescribeInstanceTypes",
            "DescribeInstances",
            "DescribeKeyPairs",
            "DescribeSecurityGroups",
            "DescribeSubnets",
            "DescribeVpcs",
            "GetConsoleOutput",
            "ImportKeyPair",
            "ModifyInstanceAttribute",
            "RevokeSecurityGroupIngress",
            "RunInstances",
            "StartInstances",
            "StopInstances",
            "TerminateInstances",
        }
    ),
    "ssm": frozenset({"GetParameter"}),
    "service-quotas": frozenset({"GetServiceQuota"}),
}
MODEL_TYPE = "service-2"
_FORMAT = "1"  # bump when the way a model is cut changes
PRUNE_AFTER_DAYS = 30


def cache_root() -> Path:
    """Where the cut models live: $XDG_CACHE_HOME/labctl/botocore-models (default ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "labctl" / "botocore-models"


def trimmed_models_dir(loader) -> Path | None:
    """A search path with the cut models for botocore's current ones; None if it cannot be written.

    `loader` is a botocore Loader without this path (it reads botocore's own models).
    """
    try:
        sources = {service: _source(loader, service) for service in OPERATIONS}
        root = cache_root() / _cache_key(sources)
        made = False
        for service, (version, _) in sources.items():
            target = root / service / version / f"{MODEL_TYPE}.json"
            if not _looks_whole(target):
                whole = loader.load_data(f"{service}/{version}/{MODEL_TYPE}")
                _write(target, _cut(whole, OPERATIONS[service]))
                made = True
        if made:
            prune(keep=root)
        else:
            os.utime(root)  # in use: not pruned by another version's run
        return root
    except (OSError, ValueError, KeyError):
        return None  # no cache: botocore's whole models, only slower


def _looks_whole(path: Path) -> bool:
    """True when `path` ends as `_write` ends a file (`}`): a file cut short does not (one read of 1 byte)."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"}"
    except OSError:  # missing, or empty (seek before the start)
        return False


def prune(keep: Path, older_than_days: float = PRUNE_AFTER_DAYS) -> list[Path]:
    """Remove the cache directories next to `keep` not used for `older_than_days`; returns them."""
    cutoff = time.time() - older_than_days * 86400
    removed = []
    for entry in keep.parent.iterdir():
        with contextlib.suppress(OSError):
            if entry != keep and entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry)
                removed.append(entry)
    return removed


def discard_damaged(service: str) -> list[Path]:
    """Remove the cut models of `service` that are not valid JSON (the next run cuts them again)."""
    removed = []
    for path in cache_root().glob(f"*/{service}/*/{MODEL_TYPE}.json"):
        try:
            json.loads(path.read_bytes())
        except ValueError:
            path.unlink(missing_ok=True)
            removed.append(path)
        except OSError:
            pass
    return removed


def _source(loader, service: str) -> tuple[str, str]:
    """The API version botocore would load for `service`, and the file it would read (not read here)."""
    version = loader.determine_latest_version(service, MODEL_TYPE)
    for search_path in loader.search_paths:
        path = os.path.join(search_path, service, version, MODEL_TYPE)
        if loader.file_loader.exists(path):
            return version, path
    raise KeyError(f"no {MODEL_TYPE} for {service} {version}")


def _cache_key(sources: dict[str, tuple[str, str]]) -> str:
    """Changes with botocore's model files (path, size, mtime) and with the operation lists."""
    import botocore

    parts = [_FORMAT, botocore.__version__]
    for service, (version, path) in sorted(sources.items()):
        found = next(p for p in (Path(path + ".json"), Path(path + ".json.gz"), Path(path)) if p.exists())
        stat = found.stat()
        parts += [service, version, str(found), str(stat.st_size), str(stat.st_mtime_ns)]
        parts += sorted(OPERATIONS[service])
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _cut(model: dict, operations: frozenset[str]) -> dict:
    """`model` with only `operations` and the shapes they reach."""
    missing = operations - set(model["operations"])
    if missing:
        raise KeyError(f"not in botocore's model: {sorted(missing)}")
    kept = {name: model["operations"][name] for name in sorted(operations)}
    shapes: set[str] = set()
    for operation in kept.values():
        for ref in [operation.get("input"), operation.get("output"), *operation.get("errors", [])]:
            if ref:
                _reach(model["shapes"], ref["shape"], shapes)
    return dict(model, operations=kept, shapes={name: model["shapes"][name] for name in sorted(shapes)})


def _reach(all_shapes: dict, name: str, seen: set[str]) -> None:
    """Add shape `name` and every shape it refers to (members, list members, map keys and values)."""
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        shape = all_shapes[current]
        refs = [shape.get(key) for key in ("member", "key", "value")]
        refs += list(shape.get("members", {}).values())
        pending += [ref["shape"] for ref in refs if ref]


def _write(path: Path, model: dict) -> None:
    """Write atomically (a parallel run may write the same file)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(model, separators=(",", ":")))
    os.replace(tmp, path)


def untrimmed_operation(full_client, client, event_name: str, **kwargs):
    """botocore `getattr.<service>` handler: an operation missing from the cut model, from `full_client()`."""
    name = event_name.rsplit(".", 1)[-1]
    if name.startswith("_"):
        return None
    return getattr(full_client(), name, None)


def paginator(full_client, client, operation_name: str):
    """`client.get_paginator`, from `full_client()` for an operation the cut model lacks.

    botocore's own would raise KeyError for it (the paginators file names it, the cut model does not).
    """
    if operation_name in client.meta.method_to_api_mapping:
        return type(client).get_paginator(client, operation_name)
    return full_client().get_paginator(operation_name)


def can_paginate(full_client, client, operation_name: str) -> bool:
    """`client.can_paginate`, answered by `full_client()` for an operation the cut model lacks."""
    if operation_name in client.meta.method_to_api_mapping:
        return type(client).can_paginate(client, operation_name)
    return full_client().can_paginate(operation_name)
