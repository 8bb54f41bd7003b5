"""Latency tables measured on a target node of a Ray cluster: ``fbnas lut build ... --ray-resource NAME``.

The target node joins the cluster with a custom resource that names its device (``ray start --address
HEAD:6379 --resources '{"pixel8": 1}'``); the build runs there as one Ray task that needs that resource, on a
copy of the table (so only the entries the node's device lacks are measured), and every row the node measured
comes back into the table with that node's fingerprint (its CPU, machine, versions): a table holds each
device's rows apart (:mod:`fbnas.lut.store`), so predictions for the target use the target's rows.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fbnas.errors import FbnasError


def _measure_on_node(table: bytes | None, kwargs: dict[str, Any]) -> tuple[bytes, dict[str, Any], str]:
    """On the target node: build into a copy of the table; (the copy's bytes, the build's counts, the device)."""
    from fbnas.lut.measure import this_device
    from fbnas.lut.predict import build_table
    from fbnas.lut.store import LutStore

    with tempfile.TemporaryDirectory(prefix="fbnas-lut-") as tmp:
        db = Path(tmp) / "lut.db"
        if table is not None:
            db.write_bytes(table)
        stats = build_table(db, progress=False, **kwargs)
        with LutStore(db) as store:  # fold the WAL into the file before it travels
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db.read_bytes(), stats, this_device(kwargs.get("dtype", "float32"))


def build_on_node(path: str | Path, resource: str, address: str = "auto", **kwargs: Any) -> dict[str, Any]:
    """:func:`fbnas.lut.build_table` (``kwargs``) on the Ray node that offers ``resource``; returns its counts
    and the node's ``device``. ``address``: ``auto`` (this machine's cluster), ``HOST:PORT`` or ``local`` (a Ray
    of this machine; tests)."""
    try:
        import ray
    except ModuleNotFoundError:
        raise FbnasError("--ray-resource needs Ray (pip install ray)") from None
    from fbnas.lut.store import LutStore

    path = Path(path)
    owns = not ray.is_initialized()
    if owns:
        try:
            ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise FbnasError(f"--ray-address: cannot join Ray at {address!r} ({first})") from None
    try:
        offered = ray.cluster_resources()
        if offered.get(resource, 0) < 1:
            custom = sorted(k for k in offered if k not in ("CPU", "GPU", "memory", "object_store_memory")
                            and not k.startswith("node:") and not k.startswith("accelerator_type:"))
            raise FbnasError(f"--ray-resource: no node of the Ray cluster offers {resource!r} (custom resources: "
                             f"{', '.join(custom) or 'none'}); start the target's node with `ray start --address "
                             f"HEAD:6379 --resources '{{\"{resource}\": 1}}'`")
        if path.exists():
            with LutStore(path) as store:  # the table as one file (its WAL folded in) to send
                store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        table = path.read_bytes() if path.exists() else None
        threads = int(kwargs.get("threads", 1))
        task = ray.remote(_measure_on_node).options(resources={resource: 1}, num_cpus=threads, max_retries=1)
        built, stats, device = ray.get(task.remote(table, kwargs))
    finally:
        if owns:
            ray.shutdown()
    with tempfile.TemporaryDirectory(prefix="fbnas-lut-") as tmp:
        copy = Path(tmp) / "node.db"
        copy.write_bytes(built)
        with LutStore(copy) as remote, LutStore(path, create=True) as store:
            merged = store.import_device(remote, device)
    return {**stats, "device": device, "imported": merged}
