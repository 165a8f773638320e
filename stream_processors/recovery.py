"""A faust table whose changelog recovery merges records instead of keeping the last one.

faust recovers a table by writing each changelog record over the stored value (last write wins,
``faust/stores/rocksdb.py`` and ``memory.py``: ``apply_changelog_batch``). The join's changelog is not
in processing order (faust publishes a commit's changelog records source partition by source
partition, ``faust/transport/consumer.py: _handle_attached``), so the last record of a key can be an
older state than one before it. :class:`JoinTable` applies :meth:`JoinState.merge` instead (to the
encoded states: :func:`stream_processors.codec.merge_join_states`): join states only gain information
until they expire, so the union of every record is the newest state in any order. A tombstone
(expiry) still deletes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import faust
from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksDBStore

from schemas.errors import ConfigurationError
from stream_processors.codec import merge_join_states

__all__ = ["JoinTable", "MergingTable"]


class MergingTable(faust.Table[bytes, bytes]):
    """A raw-bytes table recovered with :meth:`merge` (the stored value, the changelog's) per record."""

    def forget_local_state(self) -> None:
        """Drop what this worker stored locally, so that the next recovery reads the whole changelog.

        Called at start and at every revocation (faust's rebalances are eager: every partition is
        revoked, even those that come back). The local store can hold states of records whose
        offsets were never committed: a crash, or a revocation (their attachments are dropped,
        :mod:`stream_processors.guards`). Such a state can say "emitted" for a reward whose example
        was never published, while another worker committed the record that triggered it without
        emitting it: the reward would be lost. The changelog holds only what was published before a
        commit; recovered from it alone, every state is one some history made durable or will replay.
        """
        store = self.data
        if isinstance(store, RocksDBStore):
            for db in store._dbs.values():
                db.close()
            store.reset_state()
        elif isinstance(store, MemoryStore):
            store.data.clear()
            store._key_partition.clear()
        else:
            raise ConfigurationError(f"a merging table needs the rocksdb or memory store, not {type(store).__name__}")
        # faust remembers how far it applied the changelog of a partition it keeps across a rebalance
        # (faust/tables/recovery.py: active_offsets) and would read on from there into the empty store.
        recovery = cast(Any, self.app.tables).recovery
        name = self.changelog_topic.get_topic_name()
        for offsets in (recovery.active_offsets, recovery.standby_offsets):
            for tp in [tp for tp in offsets if tp.topic == name]:
                del offsets[tp]

    def merge(self, current: bytes, incoming: bytes) -> bytes:
        raise NotImplementedError

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        store = self.data
        merged: dict[bytes, tuple[int, bytes | None]] = {}
        offsets: dict[Any, int] = {}
        for event in batch:
            msg = event.message
            offsets[msg.tp] = max(msg.offset, offsets.get(msg.tp, msg.offset))
            key: bytes = msg.key
            if msg.value is None:
                merged[key] = (msg.partition, None)
                continue
            current = merged[key][1] if key in merged else self._stored(store, msg.partition, key)
            merged[key] = (msg.partition, msg.value if current is None else self.merge(current, msg.value))
        if isinstance(store, RocksDBStore):
            self._write_rocksdb(store, merged)
        elif isinstance(store, MemoryStore):
            for key, (partition, value) in merged.items():
                if value is None:
                    store.data.pop(key, None)
                    store._key_partition.pop(key, None)
                else:
                    store.data[key] = value
                    store._key_partition[key] = partition
        else:
            raise ConfigurationError(f"a merging table needs the rocksdb or memory store, not {type(store).__name__}")
        for tp, offset in offsets.items():
            store.set_persisted_offset(tp, offset)

    @staticmethod
    def _stored(store: Any, partition: int, key: bytes) -> bytes | None:
        if isinstance(store, RocksDBStore):
            value = store._db_for_partition(partition).get(key)
            return None if value is None else bytes(value)
        value = store.data.get(key)
        return None if value is None else bytes(value)

    @staticmethod
    def _write_rocksdb(store: Any, merged: dict[bytes, tuple[int, bytes | None]]) -> None:
        if not store.use_rocksdict:
            raise ConfigurationError("a merging table needs rocksdict (python-rocksdb is not supported)")
        import rocksdict

        batches: dict[int, Any] = {}
        for key, (partition, value) in merged.items():
            batch = batches.setdefault(partition, rocksdict.WriteBatch(raw_mode=True))
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        for partition, batch in batches.items():
            store._db_for_partition(partition).write(batch)


class JoinTable(MergingTable):
    """The join table: changelog records merged with :meth:`JoinState.merge`."""

    def merge(self, current: bytes, incoming: bytes) -> bytes:
        return merge_join_states(current, incoming)
