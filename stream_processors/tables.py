"""A faust table's store read and written by partition, outside faust's per-event table API.

faust's ``table[key]`` finds a key's partition from the *current event* (``faust/stores/rocksdb.py``:
``_get``, ``_set``) and sends the changelog record through a per-event buffer; without an event it
looks the key up in every partition's database. The batch path (:mod:`stream_processors.batching`)
handles many records per step and knows each record's partition, so it reads and writes the store of
that partition directly and sends the changelog record itself (:class:`~stream_processors.batching.BatchSink`).
Only the rocksdb (rocksdict) and memory stores are supported, as for the merging recovery.
"""

from __future__ import annotations

from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksDBStore

from schemas.errors import ConfigurationError

__all__ = ["store_delete", "store_get", "store_put"]


def _check(store: Any) -> None:
    if not isinstance(store, RocksDBStore | MemoryStore):
        raise ConfigurationError(f"the batch path needs the rocksdb or memory store, not {type(store).__name__}")


def store_get(table: Any, partition: int, key: bytes) -> bytes | None:
    """The stored value of ``key`` in ``partition`` (None when absent)."""
    store = table.data
    if isinstance(store, RocksDBStore):
        value = store._db_for_partition(partition).get(key)
    else:
        _check(store)
        value = store.data.get(key)
    return None if value is None else bytes(value)


def store_put(table: Any, partition: int, key: bytes, value: bytes) -> None:
    store = table.data
    if isinstance(store, RocksDBStore):
        store._db_for_partition(partition).put(key, value)
    else:
        _check(store)
        store.data[key] = value
        store._key_partition[key] = partition


def store_delete(table: Any, partition: int, key: bytes) -> bool:
    """Delete ``key`` from ``partition``; whether it was there."""
    store = table.data
    if isinstance(store, RocksDBStore):
        db = store._db_for_partition(partition)
        if db.get(key) is None:
            return False
        db.delete(key)
        store._key_index.pop(key, None)
        return True
    _check(store)
    store._key_partition.pop(key, None)
    return store.data.pop(key, None) is not None
