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

__all__ = ["StoreWrites", "store_delete", "store_get", "store_put"]


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


class StoreWrites:
    """Writes to tables' stores collected during a batch and applied together by :meth:`apply`.

    rocksdb: one write batch per partition, without the write-ahead log: the local store is forgotten
    at every start and every revocation (:meth:`~stream_processors.recovery.MergingTable.forget_local_state`),
    so nothing ever reads it back after a crash. The memory store is written at once."""

    def __init__(self) -> None:
        self._batches: dict[tuple[int, int], tuple[Any, Any]] = {}
        self._options: Any = None

    def put(self, table: Any, partition: int, key: bytes, value: bytes) -> None:
        if isinstance(table.data, RocksDBStore):
            self._batch(table, partition).put(key, value)
        else:
            store_put(table, partition, key, value)

    def delete(self, table: Any, partition: int, key: bytes) -> None:
        if isinstance(table.data, RocksDBStore):
            self._batch(table, partition).delete(key)
        else:
            store_delete(table, partition, key)

    def _batch(self, table: Any, partition: int) -> Any:
        import rocksdict

        entry = self._batches.get((id(table), partition))
        if entry is None:
            entry = self._batches[(id(table), partition)] = (table, rocksdict.WriteBatch(raw_mode=True))
        return entry[1]

    def apply(self) -> None:
        if not self._batches:
            return
        if self._options is None:
            import rocksdict

            self._options = rocksdict.WriteOptions()
            self._options.disable_wal = True
        batches, self._batches = self._batches, {}
        for (_, partition), (table, batch) in batches.items():
            table.data._db_for_partition(partition).write(batch, self._options)
