"""The adapter watcher: adapter-updates -> S3 -> sha256 check -> vLLM load -> alias switch -> unload.

Every node reads the compacted ``adapter-updates`` topic from its beginning on every start, with a
consumer identity of its own and no committed offsets, so each replica sees every update (broadcast)
and a node started late catches up. Partitions are *assigned*, not subscribed: there is no group to
share the topic with. Updates of one model_id are applied one at a time, in topic order; while the
node catches up (and whenever updates arrive faster than they load) only the newest announcement per
model_id is applied. A failed version (bad hash, refused load) is logged and counted and the old
version keeps serving.

Only trainers decide what is served: an update that is not signed with ``MC_ADAPTER_SIGNING_KEY``,
or whose files are not under ``s3://{bucket}/adapters/{model_id}/v{N}/``, is refused before it is
considered at all (:mod:`schemas.signing`), counted as ``updates_refused_{reason}``, and the live
version keeps serving.

The canary (issue #14) follows :class:`schemas.canary.ModelView`, the rules the gate applies too: a
``candidate`` is only a proposal (not loaded); a ``canary`` is loaded and then answers
``MC_NODE_CANARY_FRACTION`` of the model's requests; a live update that ends it (a promotion, a refusal,
any rollback) stops routing to it the moment it is read, before anything is loaded or unloaded, and a
version whose canary ended without promotion is never served as a canary again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from inference.api import UpdateSeen
from inference.fetch import fetch_adapter
from inference.metrics import NodeMetrics
from inference.registry import AdapterRegistry, Serving, adapter_name
from inference.settings import InferenceSettings
from inference.vllm_client import VllmClient
from schemas.adapter_store import AdapterStore
from schemas.canary import ModelView
from schemas.errors import AdapterError, AdapterVerificationError, KafkaError, StorageError, UntrustedAdapterError
from schemas.events import AdapterUpdate
from schemas.signing import verify_update
from schemas.topic_reader import TopicReader, read_update
from schemas.topics import TopicKey, topic_name

__all__ = ["AdapterWatcher"]

_log = logging.getLogger(__name__)


class AdapterWatcher:
    def __init__(
        self, settings: InferenceSettings, registry: AdapterRegistry, vllm: VllmClient, metrics: NodeMetrics
    ) -> None:
        self.s = settings
        self.registry = registry
        self.vllm = vllm
        self.metrics = metrics
        self._key = settings.signing_key()  # a node that cannot check signatures must not start
        self.topic = topic_name(TopicKey.ADAPTER_UPDATES, settings)
        self.last_update: UpdateSeen | None = None
        self.caught_up = asyncio.Event()
        self._store: AdapterStore | None = None
        self._pending: dict[str, tuple[AdapterUpdate, int]] = {}
        self._views: dict[str, ModelView] = {}
        self._pending_canary: dict[str, AdapterUpdate] = {}
        self._target: dict[str, int] = {}  # newest version accepted per model (pending or live)
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._retiring: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._store = AdapterStore(self.s)
        self._thread = threading.Thread(target=self._consume, name="mc-adapter-updates", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)
        tasks = [*self._workers.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.s.unload_on_shutdown:
            for name in {*self.registry.loaded_names(), *self._retiring}:
                try:
                    await self.vllm.unload(name)
                except AdapterError as exc:
                    _log.warning("on shutdown: %s", exc)

    # -- the Kafka side (a thread: confluent-kafka's poll blocks) --------------------------------

    def _consume(self) -> None:
        # never commits: every start reads the topic from its beginning (schemas.topic_reader)
        reader = TopicReader(self.s, group_id=f"mc-inference-{self.s.node_id}")
        try:
            while not self._stop.is_set():
                try:
                    reader.assign(self.topic, timeout_s=10)
                    break
                except KafkaError as exc:  # TopicError: not created yet; or a broker not answering yet
                    _log.warning("%s; retrying", exc)
                    self._stop.wait(2.0)
            else:
                return
            caught_up = False
            while not self._stop.is_set():
                if not caught_up and reader.caught_up:
                    caught_up = True
                    self._call(self.caught_up.set)
                try:
                    msgs = reader.poll(0.5)
                except KafkaError as exc:  # fatal: this consumer reads nothing more; the live versions keep serving
                    _log.critical("stopped reading %s: %s", self.topic, exc)
                    return
                for msg in msgs:
                    record = read_update(msg, max_bytes=self.s.max_event_bytes)
                    if record.update is None:
                        _log.error(
                            "skipping a bad record at %s[%d]@%d: %s",
                            self.topic,
                            record.partition,
                            record.offset,
                            record.error,
                        )
                        self._call(self.metrics.inc, "updates_invalid")
                        continue
                    self._call(self._offer, record.update, record.offset)
        finally:
            reader.close()

    def _call(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed while we were stopping
            self._loop.call_soon_threadsafe(fn, *args)

    # -- the event-loop side ---------------------------------------------------------------------

    def _offer(self, update: AdapterUpdate, offset: int) -> None:
        self.metrics.inc("updates_seen")
        seen = UpdateSeen(
            model_id=update.model_id,
            version=update.version,
            rollback=update.rollback,
            offset=offset,
            seen_at=time.time(),
            outcome="pending",
            stage=update.stage,
        )
        self.last_update = seen
        try:
            verify_update(update, self._key, self.s.s3_bucket)
        except UntrustedAdapterError as exc:
            self.metrics.inc("updates_refused")
            self.metrics.inc(f"updates_refused_{exc.reason}")
            seen.outcome = f"refused: {exc}"
            _log.error("refusing an update at %s@%d: %s", self.topic, offset, exc)
            return
        if not self._offer_canary(update, seen):
            return
        target = self._target.get(update.model_id, self.registry.live_version(update.model_id))
        # A re-delivered or older announcement is stale unless it says it is a rollback.
        if update.version == target or (update.version < target and not update.rollback):
            self.metrics.inc("updates_skipped")
            seen.outcome = "skipped"
            return
        self._target[update.model_id] = update.version
        self._pending[update.model_id] = (update, offset)
        self._ensure_worker(update.model_id)

    def _ensure_worker(self, model_id: str) -> None:
        if model_id not in self._workers:
            self._workers[model_id] = asyncio.create_task(self._work(model_id))

    # -- the canary ------------------------------------------------------------------------------

    def _offer_canary(self, update: AdapterUpdate, seen: UpdateSeen) -> bool:
        """Apply ``update`` to the model's canary state; True when the live path must consider it too."""
        model_id = update.model_id
        view = self._views.setdefault(model_id, ModelView(model_id))
        before = view.canary
        view.apply(update)
        if update.decision is not None:
            self.registry.record_decision(model_id, update.decision)
            self.metrics.inc(f"canary_{update.decision.outcome}")
        if view.canary is not before:
            self._pending_canary.pop(model_id, None)
            old = self.registry.end_canary(model_id)  # no new request gets it from here on
            promoted = update.stage == "live" and not update.rollback and old is not None
            if old is not None and not (promoted and old.version == update.version):
                self._retire_soon(old)
            if view.canary is not None:
                self._pending_canary[model_id] = view.canary
                self._ensure_worker(model_id)
        if update.stage == "live":
            return True
        seen.outcome = "canary" if view.canary is update else ("proposal" if update.stage == "candidate" else "skipped")
        return False

    async def _apply_canary(self, update: AdapterUpdate) -> None:
        model_id, version = update.model_id, update.version
        path = await self._fetch(update)
        name = adapter_name(model_id, version)
        await self.vllm.load(name, str(path))
        self.metrics.inc("loads")
        self._retiring.discard(name)
        serving = Serving(model_id, version, name, str(path))
        if self._views[model_id].canary is not update:  # ended while it loaded
            if self._target.get(model_id) != version:  # (unless it was promoted: the live path takes it)
                self._retire_soon(serving)
            return
        self.registry.start_canary(serving)
        self.metrics.inc("canaries")
        _log.info("%s: v%d is the canary (%.0f%% of requests)", model_id, version, 100 * self.registry.canary_fraction)

    def _retire_soon(self, old: Serving) -> None:
        if old.version > 0 and not self.registry.is_referenced(old.served_name):
            self._retiring.add(old.served_name)
            task = asyncio.create_task(self._retire(old.served_name))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _work(self, model_id: str) -> None:
        try:
            await self.caught_up.wait()
            while model_id in self._pending or model_id in self._pending_canary:
                if model_id not in self._pending:
                    canary = self._pending_canary.pop(model_id)
                    try:
                        await self._apply_canary(canary)
                    except Exception as exc:
                        self.metrics.inc("canary_failures")
                        _log.error("%s v%d: the canary was not loaded: %s", model_id, canary.version, exc)
                    continue
                update, _ = self._pending.pop(model_id)
                outcome = "live"
                try:
                    await self._apply(update)
                except Exception as exc:  # AdapterError mostly; anything else must not kill the worker
                    outcome = f"failed: {exc}"
                    self._target[model_id] = self.registry.live_version(model_id)
                    _log.error(
                        "%s v%d not applied, v%d keeps serving: %s",
                        model_id,
                        update.version,
                        self.registry.live_version(model_id),
                        exc,
                    )
                if (
                    self.last_update is not None
                    and self.last_update.model_id == model_id
                    and self.last_update.version == update.version
                ):
                    self.last_update.outcome = outcome
        finally:
            self._workers.pop(model_id, None)

    async def _apply(self, update: AdapterUpdate) -> None:
        model_id = update.model_id
        if update.version == 0:
            old = self.registry.switch(Serving(model_id, 0, self.registry.base_model))
            self._after_switch(old, 0)
            return
        path = await self._fetch(update)
        name = adapter_name(model_id, update.version)
        t0 = time.perf_counter()
        try:
            await self.vllm.load(name, str(path))
        except AdapterError:
            self.metrics.inc("load_failures")
            raise
        load_ms = (time.perf_counter() - t0) * 1000
        self.metrics.inc("loads")
        self.metrics.observe_load(load_ms)
        self._retiring.discard(name)
        old = self.registry.switch(Serving(model_id, update.version, name, str(path)), load_ms=load_ms)
        self._after_switch(old, update.version)
        _log.info("%s: v%d live (%s loaded in %.0f ms)", model_id, update.version, name, load_ms)

    async def _fetch(self, update: AdapterUpdate) -> Any:
        assert self._store is not None, "start() first"
        for attempt in range(1, self.s.load_retries + 1):
            try:
                return await asyncio.to_thread(fetch_adapter, self._store, update, self.s.adapter_cache_dir)
            except AdapterVerificationError:
                self.metrics.inc("verify_failures")
                raise
            except StorageError as exc:
                if attempt == self.s.load_retries:
                    raise AdapterError(str(exc)) from None
                _log.warning("%s (attempt %d of %d)", exc, attempt, self.s.load_retries)
                await asyncio.sleep(min(2.0**attempt, 10.0))
        raise AssertionError("unreachable")

    def _after_switch(self, old: Serving | None, version: int) -> None:
        self.metrics.inc("swaps")
        if old is not None:
            self._retire_soon(old)

    async def _retire(self, name: str) -> None:
        """Unload ``name`` once no request holds it (plus a grace for other nodes sharing vLLM)."""
        if not await self.registry.wait_drained(name, self.s.drain_timeout_s):
            _log.warning(
                "%s still has %d request(s) after %.0f s; unloading anyway",
                name,
                self.registry.in_flight(name),
                self.s.drain_timeout_s,
            )
        await asyncio.sleep(self.s.unload_grace_s)
        await self.registry.wait_drained(name, self.s.drain_timeout_s)
        if self.registry.is_referenced(name):  # switched back to it (a rollback) meanwhile
            self._retiring.discard(name)
            return
        try:
            await self.vllm.unload(name)
            self.metrics.inc("unloads")
        except AdapterError as exc:
            self.metrics.inc("unload_failures")
            _log.warning("%s", exc)
        self._retiring.discard(name)

    async def ensure_loaded(self, serving: Serving) -> None:
        """Load ``serving`` again (vLLM lost it, e.g. another node sharing the server unloaded it)."""
        if serving.path is not None:
            await self.vllm.load(serving.served_name, serving.path)
